"""``chinchilla`` command line: parses arguments and calls the package, nothing more.

Each subcommand is registered by a small ``_add_<name>`` function; its handler
imports its module lazily so that ``chinchilla --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import EXIT_USER_ERROR, UserError

Handler = Callable[[argparse.Namespace], int]


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="stream a dataset config into token shards and a manifest")
    p.add_argument("--config_path", required=True, nargs="+", help="dataset config JSON file(s)")
    p.add_argument("--max_samples", type=int, help="override the config's max_samples (training documents)")
    p.add_argument("--max_tokens", type=int, help="override the config's max_tokens (training tokens)")
    p.add_argument("--tokenizer", default="data/tokenizer", help="directory holding tokenizer.json")
    p.add_argument("--out_dir", default="data/prepared", help="datasets go to OUT_DIR/<name>/")
    p.add_argument("--overwrite", action="store_true", help="redo a finished dataset")
    p.add_argument("--rank", type=int, help="this machine's part (default: $RANK or $SLURM_ARRAY_TASK_ID or 0)")
    p.add_argument("--world_size", type=int, help="number of parts (default: $WORLD_SIZE or $SLURM_ARRAY_TASK_COUNT or 1)")

    def run(a):
        from .data.prepare import prepare_from_cli
        return prepare_from_cli(a)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chinchilla", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in ADDERS:
        add(sub)
    return parser


ADDERS: list[Callable] = [_add_prepare]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
