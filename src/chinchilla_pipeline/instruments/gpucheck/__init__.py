"""``chinchilla gpu-check``: one prepared check of every CUDA path, in priority order, inside one short lease.

``check``: the order, each part's budget, results on disk after every part (a kill keeps what was measured);
``parts``: the parts; ``env``: the machine; ``speed``: throughput of the shipped recipes and further speed
settings; ``smoke``: curriculum runs under torchrun, unbroken, killed with SIGKILL and resumed;
``compare``: runs compared step by step, a resume judged against the run-to-run difference; ``logits``: the
export against the model; ``table``: markdown.
``--mode cpu`` runs the same code on tiny models with gloo (the test suite rehearses the order with it).
"""
