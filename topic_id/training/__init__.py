"""Training: the Brains of every system, the data pipeline, checkpoints, stage transfer, a run folder."""
