"""Run reports: metrics.jsonl -> report.md and PNG plots."""
