"""HellaSwag (Zellers et al. 2019, arXiv 1905.07830) scored as llm.c and build-nanogpt score it."""
