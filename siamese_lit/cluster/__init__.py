"""SLURM: the Hydra launcher, the job's resources, the save before a time limit."""
