"""Memory is checked before it is spent: an absurd model is refused from its declared cost,
in seconds, without allocating its weights; in a sweep it is a constraint rejection."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import optuna
import pytest

from experiments.memory import MemoryBudgetError, training_memory_gb
from experiments.run import dry_build, plan_run
from experiments.sweep.study import REJECTIONS_PER_TRIAL
from resnet_blocks import SpecError
from tests.experiments.sweep.test_sweep import sweep

ABSURD = ["model=resnet50", "model.widths=[4096,8192,16384,32768]", "data=synthetic", "data.image_size=[32,32]"]


def test_estimate_grows_with_the_batch_and_is_sane_for_resnet20(make_cfg):
    cfg = make_cfg("model.depths=[3,3,3]", "model.widths=[16,32,64]", "data=synthetic", "data.image_size=[32,32]",
                   "data.num_classes=10")  # fmt: skip
    cost = dry_build(plan_run(cfg, build=False).spec)
    assert cost.activations > 0
    small = training_memory_gb(cost, cfg.trainer)
    cfg.trainer.batch_size *= 4
    assert 0.01 < small < 2.0 and training_memory_gb(cost, cfg.trainer) > 3 * small


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # the model's weights alone need 400+ GB


def test_an_absurd_model_is_refused_without_allocating_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *ABSURD, f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
         f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=_limit_address_space,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: trainer.max_memory_gb: received ") and "estimated training memory" in line
    assert not (tmp_path / "mlruns").exists()  # nothing recorded


def test_an_explicit_limit_refuses_a_normal_model(make_cfg):
    with pytest.raises(MemoryBudgetError) as err:
        plan_run(make_cfg("trainer.max_memory_gb=0.001"))
    assert isinstance(err.value, SpecError) and err.value.excess > 0
    assert str(err.value).startswith("trainer.max_memory_gb: received 0.001")
    plan_run(make_cfg("trainer.max_memory_gb=4"))  # a sane limit passes


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "resnet_blocks_process"])
def test_in_a_sweep_a_model_over_the_limit_is_a_constraint_rejection(tmp_path, launcher):
    proc = sweep(tmp_path, "trainer.max_memory_gb=0.001", "hydra.sweeper.n_trials=2", f"hydra/launcher={launcher}")
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    # Rejections take no trained trial's place; the sweep stops once they outnumber n_trials 10 to 1.
    assert len(study.trials) == 2 * REJECTIONS_PER_TRIAL and "stopped: 20 trials were rejected" in proc.stdout
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED and "over the memory limit" in t.user_attrs["rejected"]
        assert (
            t.constraints["budget"] > 0 and not t.intermediate_values
        )  # the sampler learns to avoid it; never trained


def test_on_gpus_the_default_limit_is_their_free_memory(make_cfg, tmp_path, monkeypatch):
    """Where TensorFlow trains on GPUs, the default limit is 80% of the least free GPU memory
    (nvidia-smi's figure), not the host's memory."""
    import experiments.memory as memory

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 1024\necho 2048\n")  # MiB free on two GPUs
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(memory, "_visible_gpus", lambda: 2)
    assert memory.available_gb() == (1.0, "GPU memory free")
    cfg = make_cfg("model.depths=[3,3,3]", "model.widths=[64,128,256]", "trainer.batch_size=4096")
    with pytest.raises(MemoryBudgetError, match="80% of the 1.0 GB of GPU memory free"):
        plan_run(cfg)
