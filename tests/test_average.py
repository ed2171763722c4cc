"""Checkpoint averaging on a real tiny run: the manual mean, K=1, phases, refusals, and the commands that read it."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.errors import UserError
from chinchilla_pipeline.export.trained import load_trained
from chinchilla_pipeline.train.average import average_checkpoints, averaged_from
from chinchilla_pipeline.train.checkpoint import TrainState, checksum_path, save_checkpoint, verify_checkpoint
from chinchilla_pipeline.train.rundir import average_path, list_checkpoints
from textrun import make_text_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer_dir):
    """16 steps, phase a = steps 0..8, b = 8..16; checkpoints every 5 steps, the last 2 kept:
    step_0000008_final-a, step_0000010, step_0000015, step_0000016_final-b."""
    return make_text_run(tmp_path_factory.mktemp("avgrun"), tokenizer_dir)


@pytest.fixture
def run_dir(run, tmp_path):
    """A copy of the run's checkpoints that a test may change."""
    d = tmp_path / "run"
    shutil.copytree(run["run_dir"] / "checkpoints", d / "checkpoints")
    return d


def _models(run_dir, names):
    return [TrainState.load(run_dir / "checkpoints" / n).model for n in names]


def test_the_run_has_the_checkpoints_the_tests_assume(run):
    names = [p.name for _, p in list_checkpoints(run["run_dir"])]
    assert names == ["step_0000008_final-a.pt", "step_0000010.pt", "step_0000015.pt", "step_0000016_final-b.pt"]


@pytest.mark.parametrize("last", [2, 3])
def test_average_is_the_manual_mean_and_carries_the_newest_metadata(run_dir, last):
    names = ["step_0000010.pt", "step_0000015.pt", "step_0000016_final-b.pt"][-last:]
    path = average_checkpoints(run_dir, last)
    assert path == run_dir / "averages" / f"last-{last}" / "checkpoint.pt" == average_path(run_dir, last, None)
    verify_checkpoint(path)  # its sha256 beside it holds
    avg, newest = TrainState.load(path), TrainState.load(run_dir / "checkpoints" / names[-1])
    models = _models(run_dir, names)
    assert avg.model.keys() == newest.model.keys()
    for k, v in avg.model.items():
        mean = torch.stack([m[k].float() for m in models]).mean(0)
        assert v.dtype == newest.model[k].dtype and torch.allclose(v.float(), mean, rtol=0, atol=1e-6), k
    assert (avg.step, avg.tokens_seen, avg.model_config) == (16, newest.tokens_seen, newest.model_config)
    assert avg.fingerprint == newest.fingerprint and avg.optimizer == {} and avg.rng == {}
    rec = averaged_from(path)
    assert rec["last"] == last and rec["phase"] is None
    assert rec["checkpoints"] == [{"file": n, "step": int(n[5:12])} for n in names]  # oldest first


def test_one_checkpoint_is_its_weights_exactly(run_dir):
    avg = TrainState.load(average_checkpoints(run_dir, 1, phase="a")).model
    (final_a,) = _models(run_dir, ["step_0000008_final-a.pt"])
    assert all(torch.equal(avg[k], final_a[k]) and avg[k].dtype == final_a[k].dtype for k in final_a)


def test_phase_selects_its_periodic_checkpoints_and_its_final(run_dir, tmp_path):
    out = tmp_path / "b.pt"
    assert average_checkpoints(run_dir, 3, phase="b", out=out) == out
    assert [c["file"] for c in averaged_from(out)["checkpoints"]] == [
        "step_0000010.pt",
        "step_0000015.pt",
        "step_0000016_final-b.pt",
    ]
    assert checksum_path(out).is_file()
    # the run's last 4 cross the boundary; phase a has its final only
    assert averaged_from(average_checkpoints(run_dir, 4))["checkpoints"][0]["file"] == "step_0000008_final-a.pt"
    with pytest.raises(UserError, match=r"phase 'a' of the run has 1 checkpoint, fewer than --last 2: .*keep_last"):
        average_checkpoints(run_dir, 2, phase="a")
    with pytest.raises(UserError, match=r"the run has 4 checkpoints, fewer than --last 5: checkpoint.keep_last"):
        average_checkpoints(run_dir, 5)
    with pytest.raises(UserError, match=r"has no phase 'c' \(its phases: a, b\)"):
        average_checkpoints(run_dir, 1, phase="c")


def test_a_phase_in_progress_is_the_one_after_the_last_final(run_dir):
    (run_dir / "checkpoints" / "step_0000016_final-b.pt").unlink()
    rec = averaged_from(average_checkpoints(run_dir, 2, phase="b"))
    assert [c["step"] for c in rec["checkpoints"]] == [10, 15]


def _add_checkpoint(run_dir, step: int, change) -> None:
    """Step 15's checkpoint, changed by ``change``, saved again as ``step``'s."""
    state = TrainState.load(run_dir / "checkpoints" / "step_0000015.pt")
    change(state)
    save_checkpoint(run_dir, dataclasses.replace(state, step=step), keep_last=10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.model_config.update(dropout=0.5), "model_config differs in dropout"),
        (lambda s: s.model.update({"extra.weight": torch.zeros(2)}), "has parameter 'extra.weight', which"),
        (lambda s: s.model.update({"wte.weight": s.model["wte.weight"][:-1]}), "has parameter 'wte.weight' as"),
    ],
)
def test_another_model_is_refused_in_one_line_naming_the_file(run_dir, change, message):
    _add_checkpoint(run_dir, 12, change)  # between step 10 and step 15
    with pytest.raises(UserError, match=message) as err:
        average_checkpoints(run_dir, 3)
    assert "step_0000012.pt: is another model than step_0000016_final-b.pt" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_corrupt_checkpoint_is_skipped_for_the_one_before(run_dir, caplog):
    p = run_dir / "checkpoints" / "step_0000015.pt"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    rec = averaged_from(average_checkpoints(run_dir, 2))
    assert [c["step"] for c in rec["checkpoints"]] == [10, 16]
    assert "step_0000015.pt: is corrupt" in caplog.text and "not averaged" in caplog.text
    with pytest.raises(UserError, match=r"has 3 intact checkpoints of 4 .*fewer than --last 4"):
        average_checkpoints(run_dir, 4)


def test_resume_never_picks_it_up(run_dir):
    before = list_checkpoints(run_dir)
    average_checkpoints(run_dir, 2)
    average_checkpoints(run_dir, 2, out=run_dir / "checkpoints" / "average_last-2.pt")  # even beside them
    assert list_checkpoints(run_dir) == before
    with pytest.raises(UserError, match="resume would pick up"):
        average_checkpoints(run_dir, 2, out=run_dir / "checkpoints" / "step_0000099.pt")


def test_evaluate_export_and_generate_take_it(run, run_dir, tmp_path, capsys):
    from chinchilla_pipeline.export.evaluate_domains import evaluate_checkpoint
    from chinchilla_pipeline.export.huggingface import export_huggingface

    assert main(["average-checkpoints", "--run_dir", str(run_dir), "--last", "3", "--phase", "b"]) == 0
    printed = capsys.readouterr().out
    path = average_path(run_dir, 3, "b")
    assert "averaged 3 checkpoints" in printed and "steps 10, 15, 16" in printed and f"wrote {path}" in printed
    trained = load_trained(path, run["tokenizer"])
    assert trained.step == 16 and all(torch.equal(v, trained.model.state_dict()[k]) for k, v in _avg(path).items())
    result = evaluate_checkpoint(path, run["tokenizer"], run["config"])
    assert result["checkpoint"] == str(path) and (path.parent / "evaluation.json").is_file()  # beside it
    assert not (run_dir / "evaluation.json").exists()  # the run's own evaluation is not overwritten
    assert export_huggingface(path, run["tokenizer"], tmp_path / "hf")["step"] == 16
    tok = str(run["tokenizer"])
    assert main(["generate", "--checkpoint", str(path), "--tokenizer", tok, "--max_new_tokens", "4"]) == 0
    assert main(["average-checkpoints", "--run_dir", str(run_dir), "--last", "0"]) == 2


def _avg(path):
    return TrainState.load(path).model
