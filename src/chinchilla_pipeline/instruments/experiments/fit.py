"""Chinchilla approach 2 fits: a parabola of loss against log N per budget, and N_opt against C.

Hoffmann et al. 2022 fit, for each compute budget C, a parabola to final loss against
log N and read the loss-minimising N off its vertex; D_opt = C / (6 N_opt). Then
N_opt ∝ C^a across budgets (their approach 2 gives a = 0.49; Hoffmann et al. 2022, arXiv:2203.15556).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...plan import FLOPS_PER_PARAM_TOKEN  # C = 6 N D


def fit_parabola(num_params: Sequence[float], losses: Sequence[float]) -> dict[str, Any]:
    """Least-squares L = a x² + b x + c with x = log10 N, and its vertex.

    ``convex`` False means no minimum (a ≤ 0): ``num_params_opt`` is then None.
    ``inside`` says whether the vertex lies within the sizes trained (else it is an extrapolation).
    """
    x = np.log10(np.asarray(num_params, dtype=np.float64))
    y = np.asarray(losses, dtype=np.float64)
    if len(set(x.tolist())) < 3:
        raise ValueError(f"a parabola needs at least 3 distinct sizes, got {len(set(x.tolist()))}")
    a, b, c = np.polyfit(x, y, 2).tolist()
    out: dict[str, Any] = {
        "coeffs": [a, b, c],
        "convex": a > 0,
        "num_params_opt": None,
        "loss_opt": None,
        "inside": False,
    }
    if a > 0:
        x_opt = -b / (2 * a)
        out.update(num_params_opt=10**x_opt, loss_opt=c - b * b / (4 * a), inside=bool(x.min() <= x_opt <= x.max()))
    return out


def parabola_at(coeffs: Sequence[float], num_params: np.ndarray) -> np.ndarray:
    """The fitted loss at ``num_params`` (for plots)."""
    return np.polyval(coeffs, np.log10(num_params))


def optimum(flops: float, num_params_opt: float) -> dict[str, float]:
    """N_opt, D_opt = C / (6 N_opt) and their ratio D/N."""
    d = flops / (FLOPS_PER_PARAM_TOKEN * num_params_opt)
    return {"num_params": num_params_opt, "num_tokens": d, "tokens_per_param": d / num_params_opt}


def power_law(flops: Sequence[float], values: Sequence[float]) -> dict[str, float] | None:
    """values ≈ k C^a by least squares in log-log; None with fewer than 2 budgets."""
    if len(flops) < 2:
        return None
    a, log_k = np.polyfit(np.log10(flops), np.log10(values), 1).tolist()
    return {"exponent": a, "coefficient": 10**log_k}
