"""``chinchilla hellaswag`` on a checkpoint or a Hugging Face export, and the trainer's periodic hook.

Scores use the model's own tokenizer (the run's BPE, not GPT-2's 50,257-token
one): the task is the same, the token counts per ending are not, so a score sits
beside GPT-2's published ones as "same items, same method, another tokenizer".
A Hugging Face export is loaded with ``AutoModelForCausalLM`` and ``AutoTokenizer``,
the classes lm-evaluation-harness's ``hf`` model uses.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import write_json
from ..errors import UserError
from ..schema import read_json
from ..train.rundir import HELLASWAG, result_dir
from .data import (
    DEFAULT_PATH,
    OFFICIAL_GIT_BLOB,
    OFFICIAL_URL,
    PUBLISHED_124M,
    VALIDATION_ITEMS,
    ensure_data,
    git_blob_id,
    read_items,
)
from .score import Encode, Logits, render, score

METHOD = (
    "completion-style (llm.c, build-nanogpt): acc_norm = lowest mean loss per ending token, acc = lowest "
    "summed loss; the model's own tokenizer"
)


@dataclass
class Scorable:
    """What scoring needs from a model: logits, its tokenizer, its context length, where it came from."""

    logits: Logits
    encode: Encode
    block_size: int
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    source: dict[str, Any]  # kind, path, step
    result_dir: Path  # where hellaswag.json goes by default


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available on this machine", field="--device")
    return torch.device(device)


def is_export(path: Path) -> bool:
    """A Hugging Face model directory (``config.json``), as ``chinchilla export`` writes."""
    return path.is_dir() and (path / "config.json").is_file()


def load_checkpoint_model(checkpoint: str | Path, tokenizer: str | Path | None, device: torch.device) -> Scorable:
    """A checkpoint file or a run directory (its latest final checkpoint), with the run's tokenizer."""
    from ..export.trained import load_trained, resolve_checkpoint
    from ..train.setup import autocast_factory

    path = resolve_checkpoint(checkpoint)  # a missing path is named before a missing tokenizer
    if tokenizer is None:
        raise UserError("a checkpoint needs the tokenizer directory its data was made with", field="--tokenizer")
    trained = load_trained(path, tokenizer)
    model = trained.model.to(device)
    tok = trained.tokenizer.tokenizer
    ckpt_dir = trained.checkpoint.parent
    return Scorable(
        logits=model,
        encode=lambda s: tok.encode(s, add_special_tokens=False).ids,
        block_size=trained.config.block_size,
        device=device,
        autocast=autocast_factory("auto", device),
        source={"kind": "checkpoint", "path": str(trained.checkpoint), "step": trained.step},
        result_dir=result_dir(ckpt_dir),
    )


def load_export_model(export_dir: Path, device: torch.device) -> Scorable:
    """An exported directory through lm-evaluation-harness's classes (float32 weights, bf16 autocast on CUDA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..train.setup import autocast_factory

    model = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).to(device).eval()
    tok = AutoTokenizer.from_pretrained(export_dir)
    provenance = export_dir / "export.json"
    step = read_json(provenance).get("step") if provenance.is_file() else None
    return Scorable(
        logits=lambda t: model(input_ids=t).logits,
        encode=lambda s: tok.encode(s, add_special_tokens=False),
        block_size=model.config.max_position_embeddings,  # every HF config has it (GPT2Config: n_positions)
        device=device,
        autocast=autocast_factory("auto", device),
        source={"kind": "export", "path": str(export_dir), "step": step},
        result_dir=export_dir,
    )


def evaluate_hellaswag(
    model: str | Path,
    tokenizer: str | Path | None = None,
    data: str | Path = DEFAULT_PATH,
    *,
    max_items: int | None = None,
    device: str = "auto",
    items_per_batch: int = 8,
    out: str | Path | None = None,
    url: str = OFFICIAL_URL,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``model`` (checkpoint, run directory or export directory) on HellaSwag; write and return the result.

    ``data`` is downloaded from ``url`` when missing. The result goes to ``out``, by
    default ``hellaswag.json`` in the run directory or the export directory.
    """
    path = Path(model)
    if not is_export(path):
        from ..export.trained import resolve_checkpoint

        resolve_checkpoint(path)  # a wrong path fails at once, before any download
    dev = pick_device(device)
    data_path = ensure_data(data, url)  # data before the model: no model loaded for nothing when offline
    items = read_items(data_path, max_items)
    m = load_export_model(path, dev) if is_export(path) else load_checkpoint_model(path, tokenizer, dev)
    tally = score(
        m.logits,
        [render(it, m.encode, m.block_size) for it in items],
        dev,
        items_per_batch=items_per_batch,
        autocast=m.autocast,
        progress=progress,
    )
    blob = git_blob_id(data_path)
    result = {
        **m.source,
        "data": str(data_path),
        "data_git_blob": blob,
        "official_file": blob == OFFICIAL_GIT_BLOB,
        "complete": blob == OFFICIAL_GIT_BLOB and tally.num_items == VALIDATION_ITEMS,
        "method": METHOD,
        "device": dev.type,
        **tally.summary(),
    }
    write_json(Path(out) if out is not None else m.result_dir / HELLASWAG, result)
    return result


def format_result(r: dict[str, Any]) -> str:
    """Two lines: the scores, then what they may be compared with."""
    step = f" (step {r['step']:,})" if r.get("step") is not None else ""
    head = (
        f"{r['kind']} {r['path']}{step}: HellaSwag acc_norm {100 * r['acc_norm']:.2f}% "
        f"± {100 * r['acc_norm_stderr']:.2f} ({r['correct_norm']:,}/{r['num_items']:,}), acc "
        f"{100 * r['acc']:.2f}%; {r['truncated']:,} items cut to the context"
    )
    if r["complete"]:
        note = (
            f"the full official validation set, completion-style as llm.c: compare with {PUBLISHED_124M} "
            "(chance 25%), keeping in mind the run's tokenizer is not GPT-2's"
        )
    else:
        which = "the official file's first" if r["official_file"] else "a file that is not the official validation set,"
        note = (
            f"{which} {r['num_items']:,} items: not comparable with the published {VALIDATION_ITEMS:,}-item figures "
            "(chance 25%)"
        )
    return f"{head}\n  {note}"


class TrainingHellaSwag:
    """HellaSwag at the trainer's evaluations: the first ``max_items`` items, tokenized once.

    Item i is scored by rank i mod world; the counts are all-reduced. The model is
    put in eval mode (no dropout, no randomness drawn) and back.
    """

    def __init__(
        self,
        path: str | Path,
        tokenizer_dir: str | Path,
        max_items: int | None,
        block_size: int,
        dist,
        tokenizer_sha256: str,
        items_per_batch: int,
    ):
        from ..tokenizer.load import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        if tok.sha256 != tokenizer_sha256:
            raise UserError(
                f"is not the tokenizer the run's data was made with (sha256 {tok.sha256[:12]}, the data's "
                f"{tokenizer_sha256[:12]})",
                path=tok.path,
                field="eval.hellaswag_tokenizer",
            )
        items = read_items(path, max_items)
        encode = lambda s: tok.tokenizer.encode(s, add_special_tokens=False).ids  # noqa: E731
        self.rendered = [render(it, encode, block_size) for it in items[dist.rank :: dist.world_size]]
        self.dist, self.items_per_batch = dist, items_per_batch

    def evaluate(
        self, model: torch.nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]
    ) -> dict[str, float | int]:
        """acc_norm, acc, their standard errors and the counts over all ranks' items."""
        from ..train.distributed import all_reduce_sum
        from .score import Tally

        was_training = model.training
        model.eval()
        mine = score(model, self.rendered, self.dist.device, items_per_batch=self.items_per_batch, autocast=autocast)
        model.train(was_training)
        counts = torch.tensor(
            [mine.num_items, mine.correct_norm, mine.correct, mine.truncated],
            dtype=torch.float64,
            device=self.dist.device,
        )
        n, norm, plain, cut = (int(v) for v in all_reduce_sum(counts, self.dist).tolist())
        return Tally(num_items=n, correct_norm=norm, correct=plain, truncated=cut).summary()


def training_hook(
    eval_cfg, block_size: int, dist, tokenizer_sha256: str, micro_batch_size: int
) -> TrainingHellaSwag | None:
    """The hook a curriculum's ``eval.hellaswag_path`` asks for, or None. Rows per forward pass ~ the
    training micro-batch (items x 4 endings)."""
    if eval_cfg.hellaswag_path is None:
        return None
    return TrainingHellaSwag(
        eval_cfg.hellaswag_path,
        eval_cfg.hellaswag_tokenizer,
        eval_cfg.hellaswag_max_items,
        block_size,
        dist,
        tokenizer_sha256,
        max(1, micro_batch_size // 4),
    )
