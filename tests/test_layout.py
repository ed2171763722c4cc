"""The names of a prepared dataset's files: a contract with datasets already on disk, so pinned here."""

from pathlib import Path

from chinchilla_pipeline.data.layout import (
    MANIFEST_NAME,
    PROGRESS_NAME,
    SOURCE_NAME,
    TOKEN_BYTES_NAME,
    dataset_dir,
    index_path,
    part_dir,
    shard_name,
)


def test_the_names_datasets_on_disk_were_written_with():
    assert (MANIFEST_NAME, TOKEN_BYTES_NAME) == ("manifest.json", "token_bytes.npy")
    assert (PROGRESS_NAME, SOURCE_NAME) == (".progress.json", ".source.json")
    assert shard_name("train", 0) == "train_00000.bin" and shard_name("validation", 12) == "validation_00012.bin"
    assert index_path(Path("out/web/train_00003.bin")) == Path("out/web/train_00003.idx")


def test_one_part_is_the_dataset_directory_and_parts_are_numbered_inside_it():
    assert part_dir("out", "web", 0, 1) == dataset_dir("out", "web") == Path("out/web")
    assert part_dir("out", "web", 2, 16) == Path("out/web/part_00002_of_00016")
