"""HellaSwag: scoring against a hand-computed case, the official schema, downloads, checkpoint and export."""

from __future__ import annotations

import functools
import http.server
import json
import math
import shutil
import socket
import subprocess
import threading

import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.hellaswag.data import Item, download, ensure_data, git_blob_id, read_items
from chinchilla_pipeline.hellaswag.score import ending_losses, render, score
from hellaswagkit import hellaswag_items, write_hellaswag

# --- a bigram "model" whose per-token losses are known by hand -------------------------------------------
WORDS = ["a", "b", "c", "d", "e"]
# P[prev][next]: row a = the first ending token after the context "a"; rows c and e continue an ending.
P = {
    "a": [0.1, 0.1, 0.3, 0.2, 0.3],
    "b": [0.2] * 5,
    "c": [0.1, 0.2, 0.1, 0.3, 0.3],
    "d": [0.2] * 5,
    "e": [0.1, 0.1, 0.1, 0.2, 0.5],
}


def encode(text: str) -> list[int]:
    return [WORDS.index(w) for w in text.split()]


class Bigram(torch.nn.Module):
    """logits = log P[previous token], so the loss of token y after x is exactly -log P[x][y]."""

    def __init__(self):
        super().__init__()
        self.table = torch.log(torch.tensor([P[w] for w in WORDS]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


def test_scoring_matches_a_hand_computed_case():
    item = Item(ctx="a", endings=("b", "c c", "d", "e e e"), label=3)
    # Hand: ending "b": -ln 0.1; "c c": -ln 0.3 - ln 0.1; "d": -ln 0.2; "e e e": -ln 0.3 - 2 ln 0.5.
    sums = [-math.log(0.1), -math.log(0.3) - math.log(0.1), -math.log(0.2), -math.log(0.3) - 2 * math.log(0.5)]
    counts = [1, 2, 1, 3]
    # means 2.303, 1.753, 1.609, 0.863: "e e e" (3) wins by mean; by sum "d" (1.609 < 2.590) wins.
    got_sums, got_counts = ending_losses(Bigram(), [render(item, encode, 16)], torch.device("cpu"))
    assert got_counts.tolist() == [counts]
    assert got_sums[0].tolist() == pytest.approx(sums, abs=1e-6)
    tally = score(Bigram(), [render(item, encode, 16)], torch.device("cpu"))
    assert tally.predictions == [(3, 2)]
    assert (tally.correct_norm, tally.correct, tally.num_items) == (1, 0, 1)
    r = tally.summary()
    assert r["acc_norm"] == 1.0 and r["acc"] == 0.0 and r["acc_norm_stderr"] == 0.0


def test_batching_and_padding_do_not_change_the_scores():
    """Items of different lengths batched together score as they do alone (right padding, causal model)."""
    items = [
        Item("a", ("b", "c c", "d", "e e e"), 3),
        Item("a b c", ("d d d d", "e", "a", "b"), 0),
        Item("c", ("e e", "a", "b c d e", "c"), 2),
    ]
    rendered = [render(it, encode, 16) for it in items]
    together = score(Bigram(), rendered, torch.device("cpu"), items_per_batch=3)
    alone = score(Bigram(), rendered, torch.device("cpu"), items_per_batch=1)
    assert together.predictions == alone.predictions and together.summary() == alone.summary()
    s3, _ = ending_losses(Bigram(), rendered, torch.device("cpu"))
    s1 = torch.cat([ending_losses(Bigram(), [r], torch.device("cpu"))[0] for r in rendered])
    assert torch.allclose(s3, s1, atol=1e-9)


def test_rows_longer_than_the_context_keep_the_ending_and_drop_the_context_start():
    item = Item("a b c d e a b", ("c d", "e", "a b c", "b"), 0)
    r = render(item, encode, 5)
    assert r.truncated and all(len(row) <= 5 for row in r.rows)
    assert r.rows[2] == (0, 1, 0, 1, 2) and r.starts[2] == 2  # context tail "a b", then the whole ending "a b c"
    assert r.rows[1] == (3, 4, 0, 1, 4) and r.starts[1] == 4
    assert not render(item, encode, 16).truncated


# --- the official file's schema ----------------------------------------------------------------------------
def test_reads_the_official_schema(tmp_path):
    path = write_hellaswag(tmp_path / "val.jsonl", 9)
    items = read_items(path)
    want = hellaswag_items(9)
    assert [(i.ctx, list(i.endings), i.label) for i in items] == [(w["ctx"], w["endings"], w["label"]) for w in want]
    assert len(read_items(path, max_items=4)) == 4


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("endings"), "endings"),
        (lambda d: d.update(endings=["x", "y", "z"]), "endings"),
        (lambda d: d.update(label=4), "label"),
        (lambda d: d.update(ctx=""), "ctx"),
    ],
)
def test_a_malformed_item_names_line_and_field(tmp_path, edit, field):
    items = hellaswag_items(3)
    edit(items[1])
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    with pytest.raises(UserError, match=f"{path}: field '{field}': line 2"):
        read_items(path)


def test_a_line_that_is_not_json_is_a_user_error(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(hellaswag_items(1)[0]) + "\n{not json\n")
    with pytest.raises(UserError, match="line 2 is not JSON"):
        read_items(path)


def test_git_blob_id_is_what_git_computes(tmp_path):
    path = write_hellaswag(tmp_path / "val.jsonl", 5)
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert (
        git_blob_id(path)
        == subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    )


# --- download: a local HTTP server stands for the official URL --------------------------------------------
@pytest.fixture
def served(tmp_path):
    src = write_hellaswag(tmp_path / "served" / "hellaswag_val.jsonl", 6)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield src, f"http://127.0.0.1:{server.server_address[1]}/hellaswag_val.jsonl"
    server.shutdown()
    server.server_close()


def test_download_writes_the_file_and_checks_its_git_blob(served, tmp_path):
    src, url = served
    dest = tmp_path / "data" / "hellaswag_val.jsonl"
    assert ensure_data(dest, url) == dest and dest.read_bytes() == src.read_bytes()
    other = tmp_path / "other.jsonl"
    with pytest.raises(UserError, match="not the official file"):
        download(other, url, expected_blob="0" * 40)
    assert not other.exists() and not list(tmp_path.glob(".other.jsonl.tmp.*"))


def test_offline_download_is_one_clear_line(tmp_path, capsys):
    with socket.socket() as s:  # a free local port with nothing listening: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "hellaswag_val.jsonl"
    with pytest.raises(UserError, match=r"cannot download the HellaSwag validation set .* offline\? .*--data"):
        ensure_data(dest, f"http://127.0.0.1:{port}/hellaswag_val.jsonl")
    assert not dest.exists() and not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="is a directory"):
        ensure_data(tmp_path)


# --- configuration -----------------------------------------------------------------------------------------
def test_hellaswag_path_needs_the_tokenizer_in_config_and_cli(tmp_path, capsys):
    from chinchilla_pipeline.train.config import load_curriculum
    from trainkit import write_curriculum

    cfg = write_curriculum(tmp_path, [("a", {"wiki": 1})], eval={"hellaswag_path": str(tmp_path / "val.jsonl")})
    with pytest.raises(UserError, match="hellaswag_path needs hellaswag_tokenizer"):
        load_curriculum(cfg)
    ok = write_curriculum(tmp_path, [("a", {"wiki": 1})], name="ok")
    assert (
        main(
            [
                "pretrain",
                "--config",
                str(ok),
                "--out_dir",
                str(tmp_path / "runs"),
                "--device",
                "cpu",
                "--hellaswag_path",
                str(tmp_path / "val.jsonl"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "error: field '--hellaswag_tokenizer': --hellaswag_path needs "
        "--hellaswag_tokenizer (the run's tokenizer directory)"
    )
    assert not (tmp_path / "runs").exists()
