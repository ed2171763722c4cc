"""The GPT-2-style model and its config."""
