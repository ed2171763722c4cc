"""Experiment commands: the curriculum ablation, the IsoFLOP measurement and the recipe comparison."""

from __future__ import annotations

from .common import config_path_arg, device_arg


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="curriculum ablation: phase orders and no curriculum, same tokens, over seeds")
    config_path_arg(p, default="config/demo/ablation.json", help="ablation config JSON")
    p.add_argument("--out_dir", default="runs/ablation", help="runs, results.md, results.json and ablation.png go here")
    p.add_argument("--seeds", type=int, nargs="+", help="train only these seeds (default: the config's)")
    device_arg(p)

    def run(a):
        from ..instruments.experiments.ablation import run_ablation

        run_ablation(a.config_path, a.out_dir, seeds=a.seeds, device=a.device)
        return 0

    p.set_defaults(func=run)


def _add_isoflop(sub) -> None:
    p = sub.add_parser("isoflop", help="IsoFLOP curves: measured compute-optimal N, D and D/N (Chinchilla approach 2)")
    config_path_arg(p, default="config/demo/isoflop.json", help="isoflop config JSON")
    p.add_argument("--out_dir", default="runs/isoflop", help="runs, results.md, results.json and isoflop.png go here")
    p.add_argument("--seeds", type=int, nargs="+", help="train only these seeds (default: the config's)")
    p.add_argument("--budgets", type=float, nargs="+", help="train only these budgets (FLOPs) of the config")
    device_arg(p)
    p.add_argument("--plan_only", action="store_true", help="print the runs (N, D, D/N, steps); train nothing")

    def run(a):
        from ..instruments.experiments.isoflop import run_isoflop

        run_isoflop(a.config_path, a.out_dir, seeds=a.seeds, budgets=a.budgets, device=a.device, plan_only=a.plan_only)
        return 0

    p.set_defaults(func=run)


def _add_compare_recipes(sub) -> None:
    p = sub.add_parser(
        "compare-recipes", help="GPT-2's recipe vs the modern one: lrs tuned on one seed, bpb over 3 others"
    )
    config_path_arg(p, default="config/demo/recipes.json", help="recipe comparison config JSON")
    p.add_argument("--out_dir", default="runs/recipes", help="runs, results.md, results.json and recipes.png go here")
    device_arg(p)

    def run(a):
        from ..instruments.experiments.recipes import run_compare

        run_compare(a.config_path, a.out_dir, device=a.device)
        return 0

    p.set_defaults(func=run)


ADDERS = [
    _add_ablate,
    _add_isoflop,
    _add_compare_recipes,
]
