"""Chinchilla-optimal GPT pretraining with a two-phase data curriculum."""

__version__ = "0.1.0"
