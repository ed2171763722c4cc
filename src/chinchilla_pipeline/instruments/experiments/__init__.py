"""Experiments built on the trainer: the curriculum ablation and the IsoFLOP measurement."""
