"""Configs: every shipped one loads; bad input is one line naming file and field, exit 2, nothing written."""

import json
from pathlib import Path

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data.config import DatasetConfig, TokenizerMixConfig, parse_token_count
from chinchilla_pipeline.schema import load_config
from conftest import ROOT, write_dataset_config


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("datasets/*.json")), ids=lambda p: p.name)
def test_every_shipped_dataset_config_loads(path):
    cfg = load_config(DatasetConfig, path)
    assert cfg.max_samples is not None and cfg.seed == 42


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("tokenizer_mix*.json")), ids=lambda p: p.name)
def test_every_tokenizer_mix_loads_with_its_sources(path, monkeypatch):
    from chinchilla_pipeline.tokenizer.train import load_mix

    monkeypatch.chdir(ROOT)  # mixes name their dataset configs relative to the repository root
    mix, configs = load_mix(path)
    counts = mix.samples_per_source()
    assert len(configs) == len(mix.sources) and all(n >= 1 for n in counts)
    if not any(s.max_samples for s in mix.sources):  # the total is split by weight, up to rounding
        assert abs(sum(counts) - mix.max_samples) <= len(counts)


def test_phase_configs_reach_the_seed_targets_through_max_tokens():
    targets = {
        "phase_a_wikipedia_1b": 10**9,
        "phase_a_bookcorpus_500m": 5 * 10**8,
        "phase_b_c4_1b": 10**9,
        "phase_b_forums_500m": 5 * 10**8,
    }
    for name, target in targets.items():
        cfg = load_config(DatasetConfig, ROOT / "config/datasets" / f"{name}.json")
        assert cfg.target_tokens == target == cfg.max_tokens


def test_token_counts_parse():
    assert parse_token_count("1B") == 10**9 and parse_token_count("500M tokens") == 5 * 10**8
    assert parse_token_count(1234) == 1234 and parse_token_count("1.5B") == 1_500_000_000


def run_cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize(
    "change, field, expect",
    [
        ({"max_samples": 0}, "max_samples", "greater than 0"),
        ({"max_samples": "many"}, "max_samples", "valid integer"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        (
            {"source": {"type": "local", "format": "json", "data_files": ["nope/*.jsonl"]}},
            "source.data_files.0",
            "no file matches",
        ),
        ({"source": {"type": "ftp"}}, "source", "tag"),
    ],
)
def test_bad_dataset_config_is_one_line_exit_2_nothing_written(tmp_path, capsys, tokenizer_dir, change, field, expect):
    cfg = write_dataset_config(tmp_path, **change)
    code, err = run_cli(
        ["prepare", "--config_path", str(cfg), "--tokenizer", str(tokenizer_dir), "--out_dir", str(tmp_path / "out")],
        capsys,
    )
    assert code == 2 and len(err) == 1
    assert str(cfg) in err[0] and f"field '{field}'" in err[0] and expect in err[0]
    assert not (tmp_path / "out").exists()


def test_comments_are_free_form(tmp_path):
    cfg = write_dataset_config(tmp_path, _comment="anything", _note={"x": 1}, _target_tokens="2M")
    assert load_config(DatasetConfig, cfg).target_tokens == 2_000_000


def test_malformed_and_missing_json(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",}')
    code, err = run_cli(["prepare", "--config_path", str(bad)], capsys)
    assert code == 2 and len(err) == 1 and "malformed JSON at line 1" in err[0]
    code, err = run_cli(["prepare", "--config_path", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "file not found" in err[0]


def test_command_line_overrides(tmp_path, capsys, tokenizer_dir):
    cfg = write_dataset_config(tmp_path, max_samples=500)
    code, _ = run_cli(
        [
            "prepare",
            "--quiet",
            "--config_path",
            str(cfg),
            "--max_samples",
            "17",
            "--tokenizer",
            str(tokenizer_dir),
            "--out_dir",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    m = json.loads((tmp_path / "out/topics/manifest.json").read_text())
    assert code == 0 and m["splits"]["train"]["num_docs"] == 17 and m["config"]["max_samples"] == 17
    code, err = run_cli(["prepare", "--config_path", str(cfg), "--max_samples", "-3"], capsys)
    assert code == 2 and "--max_samples" in err[0]


def test_missing_tokenizer_names_the_make_target(tmp_path, capsys):
    code, err = run_cli(
        [
            "prepare",
            "--config_path",
            str(write_dataset_config(tmp_path)),
            "--tokenizer",
            str(tmp_path / "none"),
            "--out_dir",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 2 and "make tokenizer-train-mix" in err[0]


def test_mix_with_missing_source_config(tmp_path, capsys):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"sources": [{"config": "missing.json"}]}))
    code, err = run_cli(["tokenizer-train", "--config_path", str(mix), "--out_dir", str(tmp_path / "t")], capsys)
    assert code == 2 and "field 'sources.0.config'" in err[0]
    assert TokenizerMixConfig.model_fields["vocab_size"].default == 50_257
    assert not Path(tmp_path / "t").exists()
