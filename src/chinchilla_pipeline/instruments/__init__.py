"""The instruments around the pipeline: checks before and on a GPU (``preflight``, ``gpucheck``), benchmarks
(``bench``), experiments (ablation, IsoFLOP, recipes) and the demo (its corpus, its model size).

They import the pipeline; nothing in the pipeline imports them (tests/test_structure.py).
"""
