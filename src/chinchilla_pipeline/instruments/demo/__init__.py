"""The demo's model sizing: the family member that 20 tokens per parameter allow in a time budget."""
