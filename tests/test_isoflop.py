"""IsoFLOP: the run grid, the parabola fit and its optimum, the analysis, one microscopic end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.instruments.experiments.fit import fit_parabola, optimum, power_law
from chinchilla_pipeline.instruments.experiments.isoflop import (
    IsoflopConfig,
    analyse,
    budget_label,
    format_results,
    grid,
    mixed_phase,
    run_isoflop,
)
from chinchilla_pipeline.plan import FITS
from chinchilla_pipeline.schema import load_config
from chinchilla_pipeline.train.config import CurriculumConfig
from trainkit import SEED_ORDER, write_curriculum

ROOT = Path(__file__).resolve().parents[1]


def _parabola_losses(ns, n_opt, curvature=0.3, floor=3.0):
    return [floor + curvature * (math.log10(n) - math.log10(n_opt)) ** 2 for n in ns]


def test_shipped_config_is_valid():
    cfg = load_config(IsoflopConfig, ROOT / "config/demo/isoflop.json")
    assert len(cfg.budgets) >= 2 and len(cfg.seeds) >= 2 and all(len(b.widths) >= 4 for b in cfg.budgets)


def test_parabola_recovers_a_known_minimum():
    ns = [5e4, 1e5, 2e5, 4e5, 8e5]
    fit = fit_parabola(ns, _parabola_losses(ns, 1.7e5))
    assert fit["convex"] and fit["inside"]
    assert fit["num_params_opt"] == pytest.approx(1.7e5, rel=1e-6) and fit["loss_opt"] == pytest.approx(3.0)
    # noise of 0.002 nats moves the vertex little when the curvature is 0.3 nats per decade²
    noisy = np.array(_parabola_losses(ns, 1.7e5)) + np.random.default_rng(0).normal(0, 0.002, len(ns))
    assert fit_parabola(ns, noisy)["num_params_opt"] == pytest.approx(1.7e5, rel=0.1)
    out = fit_parabola(ns, _parabola_losses(ns, 3e6))  # minimum beyond the largest size: flagged
    assert out["convex"] and not out["inside"] and out["num_params_opt"] == pytest.approx(3e6, rel=1e-6)
    concave = fit_parabola(ns, [-v for v in _parabola_losses(ns, 1.7e5)])
    assert not concave["convex"] and concave["num_params_opt"] is None
    with pytest.raises(ValueError):
        fit_parabola([1e5, 1e5, 2e5], [1.0, 1.0, 2.0])


def test_optimum_and_power_law():
    o = optimum(6e12, 1e5)  # D = 6e12 / (6 x 1e5) = 1e7 tokens: 100 tokens/param
    assert o == {"num_params": 1e5, "num_tokens": pytest.approx(1e7), "tokens_per_param": pytest.approx(100)}
    cs = [1e12, 1e13, 1e14]
    p = power_law(cs, [2.0 * c**0.49 for c in cs])
    assert p["exponent"] == pytest.approx(0.49) and p["coefficient"] == pytest.approx(2.0)
    assert power_law([1e12], [1e5]) is None


def test_analysis_recovers_optima_per_budget_with_a_seed_range():
    budgets = {1e12: 1.2e5, 4e12: 2.4e5}  # N_opt doubles when C quadruples: exponent 0.5
    rows, losses = [], {}
    ns = [50_000, 100_000, 200_000, 400_000, 800_000]
    for c, n_opt in budgets.items():
        for w, (n, base) in enumerate(zip(ns, _parabola_losses(ns, n_opt))):
            rows.append(
                {
                    "flops": c,
                    "width": w,
                    "num_params": n,
                    "num_tokens": c / (6 * n),
                    "tokens_per_param": c / (6 * n * n),
                    "steps": 100,
                }
            )
            losses[(c, w, 1)], losses[(c, w, 2)] = base - 0.01, base + 0.01  # seeds shift the curve only
    bpb = {k: v / (math.log(2) * 4.0) for k, v in losses.items()}  # as if 4 bytes per token: reported, not fitted
    a = analyse(rows, losses, bpb, [1, 2])
    for b, (c, n_opt) in zip(a["budgets"], budgets.items()):
        assert b["optimum"]["num_params"] == pytest.approx(n_opt, rel=1e-6)
        assert b["optimum"]["tokens_per_param"] == pytest.approx(c / (6 * n_opt**2), rel=1e-6)
        lo, hi = b["optimum_seed_range"]["num_params"]
        assert lo == pytest.approx(n_opt, rel=1e-6) and hi == pytest.approx(n_opt, rel=1e-6)
        assert b["num_convex_seeds"] == 2 and b["fit"]["inside"]
        for fit in FITS:
            assert b["planner"][fit.name]["num_params"] == pytest.approx(fit.compute_optimal(c)[0])
    assert a["scaling"]["exponent"] == pytest.approx(0.5)
    table = format_results(a)
    assert "| 1e+12 | 1, 100,000 (16.7) | 120,000 |" in table and "C^0.50 over 2 budgets" in table
    size = a["budgets"][0]["sizes"][0]
    assert size["bpb_mean"] == pytest.approx(size["loss_mean"] / (math.log(2) * 4.0))
    assert f"| {size['loss_mean']:.4f} ± 0.0141 | {size['bpb_mean']:.4f} ± " in table
    assert a["budgets"][1]["best_trained"]["num_params"] == 2e5  # the size nearest 2.4e5 on a log scale


def test_vertex_outside_the_sizes_is_left_out_of_the_scaling():
    ns = [5e4, 1e5, 2e5]
    rows = [
        {
            "flops": c,
            "width": w,
            "num_params": n,
            "num_tokens": c / (6 * n),
            "tokens_per_param": c / (6 * n * n),
            "steps": 100,
        }
        for c in (1e12, 4e12)
        for w, n in enumerate(ns)
    ]
    optima = {1e12: 1e4, 4e12: 1e5}  # the first budget's minimum lies below the smallest size
    losses = {(r["flops"], r["width"], 1): _parabola_losses([r["num_params"]], optima[r["flops"]])[0] for r in rows}
    a = analyse(rows, losses, losses, [1])
    assert not a["budgets"][0]["fit"]["inside"] and a["budgets"][0]["best_trained"]["num_params"] == 5e4
    assert a["scaling"] is None  # one budget with a vertex inside: no exponent


def test_grid_refuses_runs_with_too_few_steps(tmp_path):
    cfg = IsoflopConfig.model_validate(
        {
            "base": "b.json",
            "seeds": [1],
            "batch": {"global_batch_tokens": 4096},
            "budgets": [{"flops": 1e12, "widths": [64, 16, 32]}],
        }
    )
    rows = grid(cfg, {16: 74_176, 32: 160_640, 64: 370_432}, cfg.budgets)
    assert [r["width"] for r in rows] == [16, 32, 64]
    assert rows[0]["steps"] == round(1e12 / (6 * 74_176) / 4096) and rows[0]["num_tokens"] == rows[0]["steps"] * 4096
    assert budget_label(1e12) == "C1e12" and budget_label(3.5e12) == "C3.5e12"
    with pytest.raises(UserError, match="fewer than 20"):
        grid(cfg, {16: 74_176, 32: 160_640, 64: 100_000_000}, cfg.budgets)


def test_mixed_phase_weights(tmp_path):
    base = load_config(CurriculumConfig, write_curriculum(tmp_path, SEED_ORDER, steps=16))
    by_tokens = {s["name"]: s["weight"] for s in mixed_phase(base, "train_tokens")["sources"]}
    assert by_tokens == {d: 8_000.0 for d in ("wiki", "books", "c4", "forums")}  # 40 documents x 200 tokens each
    shares = {s["name"]: s["weight"] for s in mixed_phase(base, "curriculum")["sources"]}
    assert shares == pytest.approx({"wiki": 1 / 3, "books": 1 / 6, "c4": 1 / 3, "forums": 1 / 6})


def test_isoflop_end_to_end_then_rerun_skips(tmp_path, capsys):
    base = write_curriculum(tmp_path, SEED_ORDER, steps=16)
    path = tmp_path / "isoflop.json"
    path.write_text(
        json.dumps(
            {
                "base": str(base),
                "block_size": 32,
                "seeds": [1],
                "batch": {"global_batch_tokens": 256, "micro_batch_size": 4},
                "budgets": [{"flops": 1.2e9, "widths": [16, 24, 32]}],
            }
        )
    )
    out = tmp_path / "iso"
    assert run_isoflop(path, out, device="cpu", plan_only=True) is None and not (out / "results.json").exists()
    result = run_isoflop(path, out, device="cpu")
    (b,) = result["budgets"]
    assert [r["width"] for r in b["sizes"]] == [16, 24, 32] and len(result["seconds_this_invocation"]) == 3
    assert all(math.isfinite(r["loss_mean"]) and math.isfinite(r["bpb_mean"]) for r in b["sizes"])
    assert "bits per byte |" in (out / "results.md").read_text()
    weights = {s["name"]: s["weight"] for s in result["mix"]["sources"]}
    assert set(weights) == {"wiki", "books", "c4", "forums"} and len(set(weights.values())) == 1  # equal sizes
    assert (out / "isoflop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    again = run_isoflop(path, out, device="cpu")
    assert capsys.readouterr().out.count("finished, skipped") == 3 and again["budgets"] == result["budgets"]
    with pytest.raises(UserError, match="budgets"):
        run_isoflop(path, out, device="cpu", budgets=[1e9])
