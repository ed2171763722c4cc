#!/usr/bin/env python3
"""CPU benchmark: trainer tokens/s against a bare PyTorch loop (``make bench-train``).

Same as ``chinchilla bench-train`` with the CPU defaults; extra arguments pass through.
"""

import sys

from chinchilla_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-train", "--model", "config/models/cpu_small.json", "--device", "cpu", *sys.argv[1:]]))
