"""Keep freed memory in the process instead of handing it back to the OS after every step.

PyTorch on CPU frees and re-allocates its activation buffers every step. glibc
serves blocks above its mmap threshold (128 KB by default, adapting upwards)
with mmap and returns them with munmap, and trims the heap top above 128 KB:
the next step faults every page back in. On the 2-core machine of BENCHMARKS.md
that was 30% of the demo model's CPU time in the kernel (136M minor page faults
for one `make demo`); with freed blocks kept, the same model ran at ~40K tokens/s
instead of ~24K (`chinchilla bench-train --model runs/demo/model.json`). No effect on
CUDA memory, none where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
# Blocks up to 1 GiB come from the heap and stay there when freed: the demo model's logits alone are
# 16 sequences x 128 tokens x 4,096 entries x 4 bytes = 32 MiB, above glibc's adaptive ceiling (32 MiB).
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 1 << 30  # keep up to 1 GiB of free heap top


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when glibc took both settings."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
