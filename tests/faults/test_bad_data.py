"""Bad data is named: unreadable images by file (or skipped and counted, if asked), a
truncated archive in one line with nothing left behind, non-image files listed as ignored."""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from experiments.data import load_data
from resnet_blocks import SpecError
from tests.experiments.test_run import _write_jpegs

REPO = Path(__file__).resolve().parents[2]


def _folder_with_bad_files(root: Path) -> list[Path]:
    """12 images a class, two of them broken: one truncated, one not an image at all."""
    _write_jpegs(root, per_class=12, size=(16, 16))
    truncated, garbage = root / "cat" / "003.jpg", root / "dog" / "007.jpg"
    truncated.write_bytes(truncated.read_bytes()[:120])
    garbage.write_bytes(b"this is not an image")
    (root / "owl" / "notes.txt").write_text("not an image")
    return [truncated, garbage]


def test_unreadable_images_are_named(make_cfg, tmp_path, caplog):
    bad = _folder_with_bad_files(tmp_path / "imgs")
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'imgs'}", "data.image_size=[16,16]")
    with caplog.at_level(logging.WARNING, logger="experiments.data"), pytest.raises(SpecError) as err:
        load_data(cfg.data, batch_size=8)
    text = str(err.value)
    assert text.startswith(f"data.path: received '{tmp_path / 'imgs'}'") and "2 cannot be decoded" in text
    assert all(str(f) in text for f in bad) and "data.skip_bad_images=true" in text
    assert "ignored 1 entries that are not" in caplog.text and "owl/notes.txt" in caplog.text


def test_unreadable_images_can_be_skipped_and_counted(make_cfg, tmp_path):
    _folder_with_bad_files(tmp_path / "imgs")
    cfg = make_cfg("data=image_folder", f"data.path={tmp_path / 'imgs'}", "data.image_size=[16,16]",
                   "data.skip_bad_images=true")  # fmt: skip
    data = load_data(cfg.data, batch_size=8)
    assert data.num_skipped == 2 and data.num_train + data.num_val == 36 - 2
    assert sum(len(y) for _, y in data.train) == data.num_train  # every image left decodes


def test_a_truncated_archive_is_one_line_and_leaves_nothing_behind(make_cfg, tmp_path):
    _write_jpegs(tmp_path / "imgs" / "train", per_class=30, size=(16, 16))
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "imgs" / "train", arcname="train")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "data=image_folder", f"data.path={archive}",
         f"data.cache_dir={cache}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
         f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: data.path: received '{archive}'") and "truncated or corrupt" in line
    assert not cache.exists() or not any(cache.iterdir())  # no partial folder left


def test_an_archive_with_members_outside_it_is_refused_as_such(make_cfg, tmp_path):
    import io

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ["train/cat/a.jpg", "../escape.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"data"))
    cache = tmp_path / "cache"
    cfg = make_cfg("data=image_folder", f"data.path={archive}", f"data.cache_dir={cache}")
    with pytest.raises(SpecError) as err:
        load_data(cfg.data, batch_size=8)
    text = str(err.value)
    assert "members all stay inside it" in text and "'../escape.txt'" in text and "corrupt" not in text
    assert not (tmp_path / "escape.txt").exists() and not (cache / "escape.txt").exists()
    assert not any(cache.iterdir())  # nothing half-extracted left
