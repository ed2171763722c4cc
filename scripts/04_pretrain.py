#!/usr/bin/env python3
"""The seed's entry point: ``chinchilla pretrain`` (see ``--help``)."""

import sys

from chinchilla_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
