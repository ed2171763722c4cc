"""HellaSwag on a real tiny run: during training (metrics, report), then `chinchilla hellaswag` on its
checkpoint and on its Hugging Face export (lm-evaluation-harness's loading path); wandb in offline mode."""

from __future__ import annotations

import json
import struct
import sys

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.export.huggingface import export_huggingface
from chinchilla_pipeline.report.build import make_report
from chinchilla_pipeline.train.metrics import read_metrics
from chinchilla_pipeline.train.rundir import WANDB_ID
from hellaswagkit import hellaswag_items, write_hellaswag
from textrun import make_text_run

ITEMS = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer_dir):
    """Phase a, then phase b (two invocations), HellaSwag at every evaluation, wandb offline."""
    root = tmp_path_factory.mktemp("hsrun")
    data = write_hellaswag(root / "hellaswag_val.jsonl", ITEMS)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": root / "wbconf",
            "WANDB_CACHE_DIR": root / "wbcache",
            "WANDB_DATA_DIR": root / "wbdata",
        }.items():
            mp.setenv(key, str(value))
        paths = make_text_run(
            root,
            tokenizer_dir,
            phases=("a", "b"),
            wandb={"project": "chinchilla-test"},
            hellaswag={
                "hellaswag_path": str(data),
                "hellaswag_tokenizer": str(tokenizer_dir),
                "hellaswag_max_items": 10,
            },
        )
    return {**paths, "data": data}


@pytest.fixture(scope="module")
def nanochat_run(tmp_path_factory, tokenizer_dir):
    """A nanochat-architecture run, HellaSwag at every evaluation (no wandb)."""
    root = tmp_path_factory.mktemp("hsnanochat")
    data = write_hellaswag(root / "hellaswag_val.jsonl", ITEMS)
    hs = {"hellaswag_path": str(data), "hellaswag_tokenizer": str(tokenizer_dir), "hellaswag_max_items": 10}
    paths = make_text_run(root, tokenizer_dir, model_fields={"architecture": "nanochat"}, hellaswag=hs)
    return {**paths, "data": data}


def test_hellaswag_scores_a_nanochat_checkpoint_and_its_export_alike(nanochat_run, tmp_path):
    """During training, on the checkpoint, and on its NanoChatForCausalLM export: the same predictions."""
    hs = read_metrics(nanochat_run["run_dir"] / "metrics.jsonl", "hellaswag")
    assert sorted(hs) == [8, 16] and all(r["num_items"] == 10 for r in hs.values())
    args = ["hellaswag", "--data", str(nanochat_run["data"]), "--device", "cpu", "--items_per_batch", "5"]
    ours_path, theirs_path = tmp_path / "ckpt.json", tmp_path / "hf.json"
    ckpt = ["--model", str(nanochat_run["run_dir"]), "--tokenizer", str(nanochat_run["tokenizer"])]
    assert main(args + ckpt + ["--out", str(ours_path)]) == 0
    export_huggingface(nanochat_run["run_dir"], nanochat_run["tokenizer"], tmp_path / "hf")
    assert main(args + ["--model", str(tmp_path / "hf"), "--out", str(theirs_path)]) == 0
    ours, theirs = json.loads(ours_path.read_text()), json.loads(theirs_path.read_text())
    assert (ours["kind"], theirs["kind"], ours["step"], theirs["step"]) == ("checkpoint", "export", 16, 16)
    for key in ("acc_norm", "acc", "correct_norm", "correct", "num_items", "truncated"):
        assert theirs[key] == ours[key], key


def test_training_logs_hellaswag_at_every_evaluation_and_phase_end(run):
    hs = read_metrics(run["run_dir"] / "metrics.jsonl", "hellaswag")
    val = read_metrics(run["run_dir"] / "metrics.jsonl", "validation")
    assert sorted(hs) == sorted(val) == [8, 16]  # eval interval 8 = each phase's end
    for r in hs.values():
        assert r["num_items"] == 10 and r["correct_norm"] == round(r["acc_norm"] * 10)
        assert 0 <= r["acc"] <= 1 and r["acc_norm_stderr"] >= 0


def test_report_shows_hellaswag_over_training_and_at_each_phase_end(run, tmp_path):
    report = make_report(run["run_dir"], tmp_path / "report")
    text = report.read_text()
    assert "## HellaSwag (downstream)" in text and "![hellaswag](hellaswag.png)" in text
    assert (tmp_path / "report" / "hellaswag.png").stat().st_size > 0
    hs = read_metrics(run["run_dir"] / "metrics.jsonl", "hellaswag")
    assert f"| a | 8 | 2,048 | {100 * hs[8]['acc_norm']:.2f}%" in text
    assert f"| b | 16 | 4,096 | {100 * hs[16]['acc_norm']:.2f}%" in text
    assert "not GPT-2's" in text


def test_hellaswag_cli_scores_checkpoint_and_export_alike(run, tmp_path, capsys):
    """The export loads through AutoModelForCausalLM/AutoTokenizer and gives the checkpoint's predictions."""
    args = ["hellaswag", "--data", str(run["data"]), "--device", "cpu", "--items_per_batch", "5"]
    assert main(args + ["--model", str(run["run_dir"]), "--tokenizer", str(run["tokenizer"])]) == 0
    ours = json.loads((run["run_dir"] / "hellaswag.json").read_text())
    out = capsys.readouterr().out
    assert f"({ours['correct_norm']}/{ITEMS})" in out and "not the official validation set" in out
    assert ours["kind"] == "checkpoint" and ours["step"] == 16 and ours["num_items"] == ITEMS
    assert not ours["official_file"] and not ours["complete"]

    export_huggingface(run["run_dir"], run["tokenizer"], tmp_path / "hf")
    assert main(args + ["--model", str(tmp_path / "hf"), "--out", str(tmp_path / "hf.json")]) == 0
    theirs = json.loads((tmp_path / "hf.json").read_text())
    assert theirs["kind"] == "export" and theirs["step"] == 16
    for key in ("acc_norm", "acc", "correct_norm", "correct", "num_items", "truncated"):
        assert theirs[key] == ours[key], key

    report = make_report(run["run_dir"], tmp_path / "report").read_text()  # the whole-set line joins the report
    assert f"`chinchilla hellaswag` (checkpoint, step 16) on {ITEMS} items" in report


def test_export_tokenizer_round_trips_for_lm_eval(run, tmp_path):
    """What lm-eval's `hf` model needs offline: the same classes, a tokenizer that round-trips, a max length."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hf"
    export_huggingface(run["run_dir"], run["tokenizer"], out)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "GPT2LMHeadModel" and AutoConfig.from_pretrained(out).n_positions == 32
    assert tok.eos_token_id is not None and tok.model_max_length == 32
    for item in hellaswag_items(4):
        for text in [item["ctx"]] + [" " + e for e in item["endings"]]:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert ids and tok.decode(ids) == text


def test_a_checkpoint_without_tokenizer_or_with_bad_data_is_one_line(run, tmp_path, capsys):
    assert main(["hellaswag", "--model", str(run["run_dir"]), "--data", str(run["data"])]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**hellaswag_items(1)[0], "label": "four"}) + "\n")
    assert (
        main(["hellaswag", "--model", str(run["run_dir"]), "--tokenizer", str(run["tokenizer"]), "--data", str(bad)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}: field 'label': line 1: expected an integer 0-3, got 'four'"
    assert not (tmp_path / "hellaswag.json").exists()


# --- wandb --------------------------------------------------------------------------------------------------
def wandb_records(path):
    """The protobuf records of a wandb transaction log (``run-<id>.wandb``: a leveldb-style log of 32 KiB
    blocks after a 7-byte ``:W&B`` header; each chunk: crc32 (4), length (2), type (1 full, 2 first, 3 middle,
    4 last))."""
    from wandb.proto import wandb_internal_pb2

    data, block, head = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    i, buf = head, b""
    while i + head <= len(data):
        if block - i % block < head:
            i += block - i % block
            continue
        _, n, kind = struct.unpack("<IHB", data[i : i + head])
        buf, i = buf + data[i + head : i + head + n], i + head + n
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def test_wandb_offline_run_holds_the_logged_history(run):
    run_id = (run["run_dir"] / WANDB_ID).read_text().strip()
    dirs = sorted((run["run_dir"] / "wandb").glob(f"*/wandb/offline-run-*-{run_id}"))
    assert len(dirs) == 2  # phase a and phase b: two invocations, one wandb run id
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
        for d in dirs
        for rec in wandb_records(d / f"run-{run_id}.wandb")
        if rec.WhichOneof("record_type") == "history"
    ]
    by_step: dict[int, dict] = {}
    for h in history:
        by_step.setdefault(h["step"], {}).update(h)
    metrics = run["run_dir"] / "metrics.jsonl"
    train = read_metrics(metrics, "train")
    assert set(train) <= set(by_step)
    assert all(by_step[s]["train/loss"] == pytest.approx(r["loss"]) for s, r in train.items())
    val, hs = read_metrics(metrics, "validation"), read_metrics(metrics, "hellaswag")
    for s in (8, 16):
        assert by_step[s]["validation/loss/wiki"] == pytest.approx(val[s]["loss"]["wiki"])
        assert by_step[s]["hellaswag/acc_norm"] == pytest.approx(hs[s]["acc_norm"])
    trans = read_metrics(metrics, "transition")[16]
    assert by_step[16]["transition/forgetting/wiki"] == pytest.approx(trans["forgetting"]["wiki"])


def test_wandb_not_installed_is_one_clear_line(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(run["config"]),
                "--out_dir",
                str(tmp_path),
                "--device",
                "cpu",
                "--wandb_project",
                "x",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "wandb is not installed" in err and "pip install" in err
