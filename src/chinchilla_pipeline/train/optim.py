"""The optimiser of a run: AdamW alone, or Muon on the block matrices with AdamW on the rest.

Every parameter group carries ``base_lr``, its peak learning rate; the schedule
(``train/schedule.py``) gives one factor per step and ``set_schedule`` sets each
group's lr to ``base_lr`` x that factor, so groups with different peaks follow
the same warmup and decay.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import MuonConfig, OptimizerConfig

REFERENCE_WIDTH = 768  # nanochat's AdamW lrs are those of a 768-wide model, scaled by (width / 768)^-0.5


class MuonAdamW:
    """``torch.optim.Muon`` and ``torch.optim.AdamW`` stepped together, as one optimiser.

    ``param_groups`` lists Muon's groups then AdamW's, so a schedule sets every lr in one loop;
    ``state_dict`` holds both optimisers' states ({"muon": ..., "adamw": ...}). Under DDP the
    gradients are all-reduced before ``step``, so every rank computes the same orthogonalised update.
    """

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError(f"not a Muon + AdamW state (keys {sorted(state_dict)[:4]}): saved by another optimiser")
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])


def _adamw(groups: list[dict[str, Any]], opt: OptimizerConfig, device: torch.device, fused: bool) -> torch.optim.AdamW:
    for g in groups:
        g["lr"] = g["base_lr"]
    return torch.optim.AdamW(groups, betas=(opt.beta1, opt.beta2), eps=opt.eps, fused=fused and device.type == "cuda")


def muon_groups(model: torch.nn.Module, muon: MuonConfig, lr: float, width: int) -> dict[str, list[dict[str, Any]]]:
    """Muon's group (2-D weights under ``h.``, the blocks) and AdamW's groups: ``wte`` (embedding),
    ``lm_head`` (head; a head tied to the embedding is the embedding and takes ``embedding_lr``) and any
    other parameter (``lr``). Parameters are matched by identity, so a tied weight lands in one group."""
    scale = (width / REFERENCE_WIDTH) ** -0.5
    named = {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}  # tied: the first name
    matrices, embedding, head, other = [], [], [], []
    for name, p in named.values():
        if name.startswith("h.") and p.dim() == 2:
            matrices.append(p)
        elif name.startswith("wte."):
            embedding.append(p)
        elif name.startswith("lm_head."):
            head.append(p)
        else:
            other.append(p)
    adamw = [
        {"params": ps, "base_lr": base, "weight_decay": 0.0, "name": gname}
        for gname, ps, base in (
            ("embedding", embedding, muon.embedding_lr * scale),
            ("head", head, muon.head_lr * scale),
            ("other", other, lr),
        )
        if ps
    ]
    return {
        "muon": [{"params": matrices, "base_lr": muon.matrix_lr, "lr": muon.matrix_lr, "name": "matrices"}],
        "adamw": adamw,
    }


def build_optimizer(
    model: torch.nn.Module, opt: OptimizerConfig, device: torch.device, *, width: int, fused: bool = True
) -> torch.optim.Optimizer | MuonAdamW:
    """``opt.kind`` "adamw": AdamW with weight decay on matrices (Linear and embedding weights) only, not on
    biases or norm gains. "muon": ``MuonAdamW`` over ``muon_groups`` (``width``: the model's n_embd).
    AdamW's fused CUDA kernel where ``fused`` and on CUDA, else PyTorch's default (foreach)."""
    if opt.kind == "adamw":
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay, "base_lr": opt.lr},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "base_lr": opt.lr},
        ]
        return _adamw(groups, opt, device, fused)
    groups = muon_groups(model, opt.muon, opt.lr, width)
    muon = torch.optim.Muon(
        groups["muon"], lr=opt.muon.matrix_lr, weight_decay=opt.muon.weight_decay, momentum=opt.muon.momentum
    )
    return MuonAdamW(muon, _adamw(groups["adamw"], opt, device, fused))


def muon_momentum(step: int, muon: MuonConfig) -> float:
    """Muon's momentum at optimiser step ``step``: linear from ``momentum_start`` to ``momentum`` over the
    first ``momentum_warmup_steps`` steps (nanochat's ``get_muon_momentum``), then constant."""
    if step >= muon.momentum_warmup_steps:
        return muon.momentum
    frac = step / muon.momentum_warmup_steps
    return (1 - frac) * muon.momentum_start + frac * muon.momentum


def set_schedule(optimizer: torch.optim.Optimizer | MuonAdamW, factor: float, step: int, opt: OptimizerConfig) -> None:
    """This step's hyperparameters: every group's lr = its ``base_lr`` x ``factor``; Muon's momentum."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    if isinstance(optimizer, MuonAdamW):
        for group in optimizer.muon.param_groups:
            group["momentum"] = muon_momentum(step, opt.muon)
