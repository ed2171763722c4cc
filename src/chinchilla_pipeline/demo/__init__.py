"""Scaled-down runs: the demo, the curriculum ablation and the IsoFLOP study."""
