#!/usr/bin/env python3
"""Prepare datasets into token shards: `chinchilla prepare` (see --help)."""

import sys

from chinchilla_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
