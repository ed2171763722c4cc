"""Curriculum pretraining: sampler, schedule, checkpoints, trainer, metrics."""
