"""``python -m chinchilla_pipeline.cli``: what torchrun and the Makefile run."""

import sys

from . import main

sys.exit(main())
