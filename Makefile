# Every target calls the package's `chinchilla` command; no logic lives here.
PYTHON ?= .venv/bin/python
CLI    := $(PYTHON) -m chinchilla_pipeline.cli
DATA   ?= data
TOK    ?= $(DATA)/tokenizer
PREP   ?= $(DATA)/prepared
DS     := config/datasets

.PHONY: help install test
help:
	@grep -E '^[a-zA-Z0-9_.-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install: ## create .venv and install the package (unpinned torch: CUDA build on GPU machines)
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'

test: ## install (CPU torch) and run the test suite
	./scripts/test.sh
