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

# --- data: tokenizer and dataset preparation ---
TOKENIZER_MIX ?= config/tokenizer_mix.json
PREPARE = $(CLI) prepare --tokenizer $(TOK) --out_dir $(PREP)

.PHONY: tokenizer-train-mix prepare-phase-a prepare-phase-b prepare-chinchilla-full \
        prepare-wikipedia-1b prepare-bookcorpus-500m prepare-c4-1b prepare-forums-500m \
        estimate-phases verify-data test-max-samples bench-prepare
tokenizer-train-mix: ## byte-level BPE on the mix of all sources (config/tokenizer_mix.json)
	$(CLI) tokenizer-train --config_path $(TOKENIZER_MIX) --out_dir $(TOK)

prepare-wikipedia-1b: ## phase A: Wikipedia, 1B tokens
	$(PREPARE) --config_path $(DS)/phase_a_wikipedia_1b.json
prepare-bookcorpus-500m: ## phase A: BookCorpus, 500M tokens
	$(PREPARE) --config_path $(DS)/phase_a_bookcorpus_500m.json
prepare-c4-1b: ## phase B: C4, 1B tokens
	$(PREPARE) --config_path $(DS)/phase_b_c4_1b.json
prepare-forums-500m: ## phase B: Reddit forums, 500M tokens
	$(PREPARE) --config_path $(DS)/phase_b_forums_500m.json
prepare-phase-a: prepare-wikipedia-1b prepare-bookcorpus-500m ## phase A, 1.5B tokens
prepare-phase-b: prepare-c4-1b prepare-forums-500m ## phase B, 1.5B tokens
prepare-chinchilla-full: prepare-phase-a prepare-phase-b ## both phases, 3B tokens

estimate-phases: ## dry run: tokens per document and the max_samples each phase config needs
	$(CLI) estimate --tokenizer $(TOK) --config_path $(DS)/phase_a_*.json $(DS)/phase_b_*.json

verify-data: ## re-read every prepared dataset: sizes, checksums, tokenizer
	$(CLI) verify --tokenizer $(TOK) $(patsubst %/manifest.json,%,$(wildcard $(PREP)/*/manifest.json))

test-max-samples: ## the seed's offline smoke test: small tokenizer, then --max_samples 100
	$(CLI) tokenizer-train --config_path config/tokenizer_mix_test.json --out_dir $(DATA)/tokenizer_test
	$(PYTHON) scripts/01_prepare_data.py --config_path $(DS)/test_max_samples.json --max_samples 100 \
		--tokenizer $(DATA)/tokenizer_test --out_dir $(PREP) --overwrite
