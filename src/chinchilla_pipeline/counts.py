"""Counts as people type and read them: ``"124M"``, ``"2.5B tokens"``, ``124.44M``, ``1.4 h``.

The one place that parses and formats counts; it imports nothing of the package, so
every config schema and the planner can use it.
"""

from __future__ import annotations

import math
import re
from typing import Optional

_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(value: str) -> float:
    """'124M', '2.48B', '1.5e9', '124439808', '524_288' -> float; raises ValueError otherwise."""
    text = str(value).strip().replace("_", "").replace(",", "")
    if m := re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kKmMbBgGtT])", text):
        x = float(m.group(1)) * _SUFFIXES[m.group(2).lower()]
    else:
        try:
            x = float(text)
        except ValueError:
            x = math.nan
    if not math.isfinite(x):
        raise ValueError(f"expected a count such as 124M, 2.5B or 1.5e9, got {value!r}")
    return x


def parse_token_count(value: int | str) -> int:
    """``1000000``, ``"1B"``, ``"500M"``, ``"1.5B tokens"`` -> int (``parse_count``, rounded)."""
    if isinstance(value, int):
        return value
    return int(round(parse_count(re.sub(r"\s*tokens?\s*$", "", str(value)))))


def human(x: Optional[float], unit: str = "") -> str:
    """124_439_808 -> '124.44M'; None -> 'n/a'."""
    if x is None:
        return "n/a"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suffix}{unit}"
    return f"{x:.4g}{unit}"


def compact(x: float) -> str:
    """Three significant digits, for axis labels and prose: 0, 950, 100K, 1.5M, 2.48B."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def human_seconds(s: float) -> str:
    """Seconds as '3.2 s', '12.5 min', '4.1 h' or '2.3 days'."""
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
