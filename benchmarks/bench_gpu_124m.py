#!/usr/bin/env python3
"""GPU benchmark: GPT-2 124M, context 1024, bf16 autocast, torch.compile (``make bench-train-gpu``).

Prints tokens/s of the trainer and of a bare loop, their ratio, and MFU =
(6N + 12·L·H·Q·T) FLOPs/token x tokens/s over the card's dense bf16 peak
(A100 312, H100 989 TFLOP/s, from FACTS.md; other cards: pass --peak_tflops).
Micro-batch 16 x 1,024 tokens, 4 micro-batches per step (65,536 tokens per
step, one GPU's share of llm.c's 524,288 on 8 GPUs). Reference: llm.c reaches
about 468K tokens/s per H100 on this model (FACTS.md).
"""

import sys

from chinchilla_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-train", "--model", "config/models/gpt2_124m.json", "--device", "cuda",
                   "--dtype", "bfloat16", "--compile", "on", "--micro_batch_size", "16", "--grad_accum", "4",
                   "--steps", "20", "--rounds", "2", "--warmup_steps", "5", *sys.argv[1:]]))
