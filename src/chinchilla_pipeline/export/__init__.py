"""A trained checkpoint out of the trainer: Hugging Face export, text generation, validation loss per domain."""
