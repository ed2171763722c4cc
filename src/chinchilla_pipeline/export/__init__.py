"""A trained checkpoint out of the trainer: Hugging Face export and text generation."""
