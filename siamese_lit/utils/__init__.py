"""Infrastructure of the entry points: errors, config specs, checkpoints, files, run dirs, faults, sweeps."""
