"""``chinchilla gpu-check``: one prepared check of every CUDA path, run in one go on a GPU machine.

``env``: the machine; ``speed``: tokens/s of the trainer per speed setting (and of a bare loop for the
baseline); ``smoke``: a real curriculum run killed with SIGKILL and resumed, under torchrun, exported;
``check``: runs them in order within the deadline and writes ``gpu_check.json`` and ``gpu_check.md`` after
every part (a kill keeps what was measured).
``--mode cpu`` runs the same code on a tiny model with gloo (the test suite runs it).
"""
