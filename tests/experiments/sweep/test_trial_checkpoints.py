"""Where a sweep's trials keep their checkpoints: a folder every worker can reach, or a clear
refusal, never a local folder named after a URI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from experiments.sweep.trial_checkpoints import checkpoint_root
from resnet_blocks import SpecError


def test_auto_is_beside_a_sqlite_study_and_paths_are_taken_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoint_root("auto", f"sqlite:///{tmp_path / 'optuna.db'}") == tmp_path / "optuna-checkpoints"
    assert checkpoint_root("none", None) is None
    assert checkpoint_root(str(tmp_path / "shared"), None) == tmp_path / "shared"
    assert checkpoint_root(f"file://{tmp_path / 'shared'}", None) == tmp_path / "shared"
    assert checkpoint_root("rel/ckpt", None) == Path(tmp_path / "rel" / "ckpt")


@pytest.mark.parametrize("uri", ["s3://bucket/ckpt", "gs://b/x", "http://host/x"])
def test_object_store_uris_are_refused_not_made_local_folders(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as err:
        checkpoint_root(uri, None)
    assert err.value.field == "hydra.sweeper.checkpoints" and "object stores" in str(err.value)
    assert not any(tmp_path.iterdir())


def test_auto_with_a_shared_study_says_its_folder_is_local(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="experiments.sweep"):
        root = checkpoint_root("auto", "postgresql://u@host/db")
    assert root == tmp_path / "sweep-checkpoints"
    assert "on this machine only" in caplog.text and "hydra.sweeper.checkpoints=PATH" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="experiments.sweep"):
        checkpoint_root("auto", f"sqlite:///{tmp_path / 'o.db'}")
    assert not caplog.text
