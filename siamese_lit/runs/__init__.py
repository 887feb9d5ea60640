"""A training run's lifecycle: its callbacks and Hydra callbacks, the checkpoint it can resume from,
stops and signals, run dirs, multirun jobs, the provenance every result records.
"""
