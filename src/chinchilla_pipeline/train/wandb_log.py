"""Optional Weights & Biases logging beside ``metrics.jsonl`` and TensorBoard (off unless asked for).

The same records as TensorBoard, under the same names (``train/loss``,
``validation/loss/<domain>``, ``transition/forgetting/<domain>``,
``hellaswag/acc_norm``, ...), against the trainer's ``step`` (a wandb metric of
its own, so that steps logged again after a resume are plain points). One wandb
run per run directory: its id is kept in ``<run_dir>/wandb_run_id``, so phase A,
phase B and every resume append to the same run. Each invocation writes wandb's files under
its own ``<run_dir>/wandb/<NNNN>/`` (wandb names its directories by the second, so two invocations
within one second would share one); ``WANDB_MODE=offline`` writes there without network
(``wandb sync`` uploads it later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import UserError
from .rundir import WANDB, WANDB_ID


def require_wandb():
    """The ``wandb`` module, or a ``UserError`` saying how to install it."""
    try:
        import wandb
    except ImportError:
        raise UserError(
            "wandb is not installed: pip install 'chinchilla-pipeline[wandb]' (or pip install wandb), "
            "or leave out --wandb_project",
            field="--wandb_project",
        ) from None
    return wandb


class WandbLogger:
    """One wandb run per run directory; ``log`` takes a record and its scalars (TensorBoard's names)."""

    def __init__(self, run_dir: Path, project: str, name: str | None = None, entity: str | None = None):
        wandb = require_wandb()
        from wandb.sdk.lib.runid import generate_id

        id_file = run_dir / WANDB_ID
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else generate_id()
        base = run_dir / WANDB
        invocation = base / f"{sum(1 for _ in base.iterdir()) if base.is_dir() else 0:04d}"
        invocation.mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=project,
                entity=entity,
                name=name or run_dir.resolve().name,
                id=run_id,
                resume="allow",
                dir=str(invocation),
                settings=wandb.Settings(console="off"),
            )
        except wandb.errors.Error as err:
            raise UserError(
                f"wandb could not start ({str(err).splitlines()[0]}): run `wandb login`, or set WANDB_MODE=offline",
                field="--wandb_project",
            ) from None
        if not id_file.is_file():
            write_text(id_file, run_id + "\n")
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, record: dict[str, Any], scalars: dict[str, float]) -> None:
        if record.get("type") == "start":  # the plan of this invocation: tokens per step, phases, parameters
            self.run.config.update(
                {k: v for k, v in record.items() if k not in ("type", "time")}, allow_val_change=True
            )
        if scalars and record.get("step") is not None:
            self.run.log({"step": record["step"], **scalars})

    def close(self) -> None:
        self.run.finish()
