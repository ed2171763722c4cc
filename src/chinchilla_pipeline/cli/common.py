"""What every command shares: one flag vocabulary and argument checks.

Flags: ``--config_path`` for a config file (the seed's spelling; ``--config`` is an alias),
``--out_dir`` for an output directory, ``--out_path`` for an output file (``--out`` is an alias),
``--checkpoint`` for a checkpoint file or run directory, ``--model_config`` for a model config,
``--tokenizer`` for a tokenizer directory.
"""

from __future__ import annotations

import argparse

from ..counts import parse_count
from ..errors import UserError


def config_path_arg(p: argparse.ArgumentParser, **kwargs) -> None:
    """``--config_path`` (alias ``--config``): the command's config file."""
    p.add_argument("--config_path", "--config", dest="config_path", **kwargs)


def device_arg(p: argparse.ArgumentParser, help: str = "auto: CUDA when present, else CPU") -> None:
    """``--device`` auto|cuda|cpu."""
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help=help)


def checkpoint_args(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (a file or a run directory) and ``--tokenizer`` (its data's), both required."""
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest final one)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer directory the run's data was made with")


def out_path_arg(p: argparse.ArgumentParser, **kwargs) -> None:
    """``--out_path`` (alias ``--out``): the command's output file."""
    p.add_argument("--out_path", "--out", dest="out_path", **kwargs)


def parse_phase(value: str) -> tuple[str, float]:
    """'A=0.5' -> ('A', 0.5); argparse prints the message of a bad one (``ArgumentTypeError``)."""
    name, sep, share = value.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=SHARE such as A=0.5, got {value!r}") from None


def count(value: str) -> float:
    """``counts.parse_count`` for argparse: a bad count prints its message, not "invalid value"."""
    try:
        return parse_count(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive(args: argparse.Namespace, *names: str) -> None:
    """Each named flag, when given, is a positive number; else one ``UserError`` naming it."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value > 0:  # nan is not > 0 either
            raise UserError(f"expected a positive number, got {value}", field=f"--{name}")
