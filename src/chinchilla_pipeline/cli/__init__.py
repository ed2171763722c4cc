"""``chinchilla`` command line: parses arguments and calls the package, nothing more.

Each subcommand is registered by a small ``_add_<name>`` function in the module of its area
(``data``, ``train``, ``outputs``, ``experiments``); its handler imports the package lazily so
that ``chinchilla --help`` stays fast. Flags share one vocabulary (``common.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import EXIT_USER_ERROR, UserError, environment_error
from ..malloc import keep_freed_memory
from . import data, experiments, outputs, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chinchilla", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (data, train, outputs, experiments):
        for add in module.ADDERS:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keep_freed_memory()  # CPU training: no page faults for re-allocated activations (malloc.py)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # disk full, read-only output, ...: one line; other OS errors are bugs
        if (env := environment_error(err)) is None:
            raise
        print(f"error: {env}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
