"""The run report of a real tiny curriculum run: plots that open, numbers read from the metrics."""

from __future__ import annotations

import json
import math
import re

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.plan import chinchilla_plan
from chinchilla_pipeline.report.build import make_report
from chinchilla_pipeline.report.plots import DPI, FIGSIZE
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.pretrain import run_pretrain
from trainkit import SEED_ORDER, write_curriculum

PLOTS = [
    "train_loss.png",
    "validation_loss.png",
    "validation_bpb.png",
    "tokens_per_source.png",
    "source_shares.png",
    "learning_rate.png",
    "throughput.png",
    "budget.png",
]
STEPS = 40  # 20 per phase, 256 tokens per step


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = write_curriculum(root, SEED_ORDER, steps=STEPS)
    assert run_pretrain(cfg, out_dir=root / "runs", device="cpu") == 0
    return root / "runs" / "run"


def test_plots_open_with_the_expected_size_and_are_drawn(run_dir, tmp_path):
    from matplotlib.image import imread
    from PIL import Image

    md = make_report(run_dir, tmp_path).read_text()
    for name in PLOTS:
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
        pixels = imread(tmp_path / name)
        assert pixels.std() > 0.05  # not a blank canvas
        assert f"]({name})" in md


def test_the_target_weights_logged_are_the_phase_weights_and_the_drawn_shares_follow_them(run_dir):
    train = read_metrics(run_dir / "metrics.jsonl", "train")
    logged = [s for s in sorted(train) if "target_weights" in train[s]]
    assert train[9]["target_weights"] == pytest.approx({"wiki": 2 / 3, "books": 1 / 3, "c4": 0, "forums": 0})
    assert train[STEPS - 1]["target_weights"] == pytest.approx({"wiki": 0, "books": 0, "c4": 2 / 3, "forums": 1 / 3})
    for a, b in zip(logged, logged[1:]):  # within one sequence of the target over each interval (8 per step)
        drawn = {k: v - train[a]["tokens_seen"].get(k, 0) for k, v in train[b]["tokens_seen"].items()}
        if train[a]["phase"] == train[b]["phase"]:
            for k, w in train[b]["target_weights"].items():
                assert abs(drawn.get(k, 0) - w * sum(drawn.values())) <= 2 * 32  # two sequences of 32 tokens


def test_report_numbers_come_from_the_metrics(run_dir):
    md = make_report(run_dir).read_text()  # default: RUN_DIR/report
    assert (run_dir / "report" / "report.md").is_file()
    record = read_metrics(run_dir / "metrics.jsonl", "validation")[STEPS]
    val, bpb = record["loss"], record["bpb"]
    for domain, loss in val.items():
        row = rf"\| {domain} \| [ab] \| {loss:.4f} \| {math.exp(loss):.2f} \| {bpb[domain]:.4f} \|"
        assert re.search(row, md), domain
    mean = sum(val.values()) / len(val)
    assert f"| **mean** |  | {mean:.4f} | {math.exp(mean):.2f} | {record['bpb_mean']:.4f} |" in md
    assert f"| final validation bits per byte, mean over domains | {record['bpb_mean']:.4f} |" in md

    trans = read_metrics(run_dir / "metrics.jsonl", "transition")[STEPS]
    b, a = trans["before_bpb"], trans["after_bpb"]
    for domain, rise in trans["forgetting"].items():
        assert (
            f"| {domain} | {trans['before'][domain]:.4f} | {trans['after'][domain]:.4f} | {rise:+.4f} | "
            f"{b[domain]:.4f} | {a[domain]:.4f} | {trans['forgetting_bpb'][domain]:+.4f} |"
        ) in md
    for domain, fall in trans["gain"].items():
        assert f"| {-fall:+.4f} | {b[domain]:.4f} | {a[domain]:.4f} | {-trans['gain_bpb'][domain]:+.4f} | " in md

    train = read_metrics(run_dir / "metrics.jsonl", "train")
    seen_a = train[STEPS // 2 - 1]["tokens_seen"]
    assert f"| a | 0..20 | {STEPS // 2 * 256:,} | wiki {seen_a['wiki']:,}" in md
    start = read_metrics(run_dir / "metrics.jsonl", "start")[0]
    plan = chinchilla_plan(start["num_params"], phases=(("all", 1.0),), tokens_per_step=256)
    assert f"| planner's budget D = 20 N | {plan['num_tokens']:,} |" in md
    assert f"| tokens trained | {STEPS * 256:,} ({STEPS * 256 / start['num_params']:.2f} per parameter) |" in md
    last = [train[s]["loss"] for s in range(STEPS - 10, STEPS)]
    assert f"{sum(last) / 10:.4f} nats/token" in md
    assert "Dashed lines: phase b starts at 5,120 tokens." in md


def test_report_is_deterministic(run_dir, tmp_path):
    make_report(run_dir, tmp_path / "one")
    make_report(run_dir, tmp_path / "two")
    for name in PLOTS + ["report.md"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_report_of_a_run_with_only_its_first_phase(tmp_path):
    cfg = write_curriculum(tmp_path, SEED_ORDER, steps=20)
    assert run_pretrain(cfg, out_dir=tmp_path / "runs", phase="a", device="cpu") == 0
    md = make_report(tmp_path / "runs" / "run", tmp_path / "out").read_text()
    assert "steps trained | 10 of 20" in md and "No phase after the first has finished yet." in md
    assert "Dashed lines" not in md
    row = re.search(r"\| a \| 0\.\.10 \| 2,560 \| wiki ([\d,]+) \(.*\), books ([\d,]+) ", md)
    assert sum(int(x.replace(",", "")) for x in row.groups()) == 10 * 256


def test_missing_or_broken_metrics_are_user_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="no metrics.jsonl"):
        make_report(tmp_path)
    assert main(["report", "--run_dir", str(tmp_path)]) == 2
    (tmp_path / "metrics.jsonl").write_text("not json\n")
    assert main(["report", "--run_dir", str(tmp_path)]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err


def test_a_run_before_its_first_log_interval_is_a_user_error(run_dir, tmp_path):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    head = []
    for line in lines:  # up to the first train record, before any logged interval
        head.append(line)
        if json.loads(line)["type"] == "train":
            break
    assert '"tokens_per_s"' not in "".join(head)
    (tmp_path / "metrics.jsonl").write_text("".join(head))
    with pytest.raises(UserError, match="no logged interval"):
        make_report(tmp_path)
    assert main(["report", "--run_dir", str(tmp_path)]) == 2


def test_report_of_a_run_recorded_before_bits_per_byte(run_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    with open(old / "metrics.jsonl", "w") as f:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            f.write(json.dumps({k: v for k, v in rec.items() if "bpb" not in k}) + "\n")
    md = make_report(old, tmp_path / "out").read_text()
    assert "| **mean** |  |" in md and " | - |" in md and "bits per byte, mean over domains" not in md
    assert not (tmp_path / "out" / "validation_bpb.png").exists()
