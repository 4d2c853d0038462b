"""Plugins named by file path work from any directory (model.plugins=[/path/to/blocks.py])."""

from __future__ import annotations

import sys

import pytest

from resnet_blocks import SpecError, load_plugins
from resnet_blocks.registry import BLOCKS
from tests.conftest import REPO_ROOT, subprocess_env

PLUGIN = """
from resnet_blocks import register_block
from resnet_blocks.blocks import regular


@register_block("{name}", preactivation=True)
def block(x, *, width, stride, name, ctx):
    return regular(x, width=width, stride=stride, name=name, ctx=ctx)
"""


def test_a_plugin_file_registers_its_blocks_once(tmp_path):
    f = tmp_path / "my_blocks.py"
    f.write_text(PLUGIN.format(name="file_plugin_block"))
    try:
        assert load_plugins([str(f)]) == [str(f)]
        assert "file_plugin_block" in BLOCKS
        load_plugins([str(f)])  # a second load is a no-op (a re-registration would raise)
    finally:
        BLOCKS.unregister("file_plugin_block")


def test_a_missing_plugin_file_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"model.plugins\[0\]: received '.*nope.py'; allowed: an existing Python file"):
        load_plugins([str(tmp_path / "nope.py")], field_prefix="model.")


def test_the_tutorial_block_works_from_another_directory(tmp_path):
    env = subprocess_env()
    env.pop("PYTHONPATH")  # (the repository is not importable from here: only the file path works)
    plugin = REPO_ROOT / "examples" / "se_block.py"
    cmd = [sys.executable, "-m", "experiments.describe", f"model.plugins=[{plugin}]", "model.block=se_regular"]
    from tests.parallel import run_together

    proc, listing, by_module = run_together([
        dict(args=cmd, cwd=tmp_path, env=env),
        dict(args=[sys.executable, "-m", "experiments.blocks", "--plugins", str(plugin)], cwd=tmp_path, env=env),
        dict(args=[*cmd[:3], "model.plugins=[examples.se_block]", cmd[-1]], cwd=tmp_path, env=env),
    ], timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MACs" in proc.stdout  # (built with the block)
    assert listing.returncode == 0 and "se_regular" in listing.stdout, listing.stderr[-2000:]
    assert by_module.returncode == 2
    assert "A file works from anywhere: plugins=[/path/to/module.py]" in by_module.stderr
