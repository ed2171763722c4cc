"""The machine a check ran on: Python, torch, CUDA, the card, its memory and the peak FLOP/s assumed."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ...train.metrics import PEAK_BF16_FLOPS, peak_flops


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the device; on CUDA the card's name, memory, capability and assumed dense bf16 peak."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "pythonpath": os.environ.get("PYTHONPATH"),  # scripts/gpu_check.sh: src/ (and /tmp/site with .whl/)
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        peak = peak_flops(device)
        out.update(
            card=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            nccl=".".join(map(str, torch.cuda.nccl.version())),
            peak_bf16_tflops=peak / 1e12 if peak else None,
            peak_source="train/metrics.py PEAK_BF16_FLOPS (dense bf16, no sparsity): "
            + ", ".join(f"{k} {v / 1e12:.0f}" for k, v in PEAK_BF16_FLOPS.items()),
            flash_sdp_enabled=torch.backends.cuda.flash_sdp_enabled(),
            cudnn_sdp_enabled=torch.backends.cuda.cudnn_sdp_enabled(),
        )
    else:
        out.update(card=f"CPU ({platform.processor() or platform.machine()})", peak_bf16_tflops=None)
    return out


def process_start() -> float:
    """When this process started, on the ``time.monotonic`` clock (Linux: /proc; elsewhere: now), so a
    deadline counts Python's start-up and torch's import too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])  # seconds since boot
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)
