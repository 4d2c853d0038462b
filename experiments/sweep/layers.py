"""What a sweep adds around each trial, by kind of task.

:class:`ResNetLayer` is active when the task trains ResNets through a trial function
(``experiments.run``, or an app on its config such as ``benchmarks/replay.py``): it vets each
sampled architecture (constraints, memory, invalid specs) before anything trains, writes the
trial's ticket, and ends the sweep with the summary table, the report and the MLflow parent
run. :class:`PlainLayer` serves any other Hydra app: its jobs get the sampled values only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from experiments.memory import MemoryBudgetError
from experiments.overrides import format_override
from experiments.sweep import study as st
from experiments.sweep.baselines import named, trial_label
from experiments.sweep.executor import Job
from experiments.sweep.records import Pending, Recorder
from experiments.sweep.space import sample
from experiments.sweep.ticket import TrialTicket
from experiments.sweep.trial_checkpoints import trial_folder
from resnet_blocks import SpecError

log = logging.getLogger("experiments.sweep")


@dataclass
class ResNetLayer:
    conf: Any  # the sweeper's config
    config: Any  # the sweep's Hydra config (searchpath, sweep dir)
    compose: Any  # overrides -> the job's config, as the launcher composes it
    monitor: str
    recorder: Recorder | None = None
    parent_run_id: str | None = None
    jobs_vet: bool = False  # the jobs build (and so vet) their models: no dry build here (costs from specs still are)
    checkpoints: Path | None = None  # the root of the trials' checkpoint folders (None: off)

    def prepare(self, trial, values: dict, overrides: list[str], retry_of: int | None) -> Pending | None:
        """Vet the trial's model; a rejected architecture is recorded and None returned, and a
        configuration the study has trained or rejected already is answered from the study.

        Costs come from the spec (no model built) for every block and shortcut with a
        cost function, so budgets and memory are decided here, before any job; a model only a
        build can count (a plugin block without one) is built here, or by its job (``jobs_vet``).
        """
        from experiments.memory import check_training_memory
        from experiments.run import arch_label, dry_build, plan_run

        c, recorder = self.conf, self.recorder
        arch = None
        try:
            cfg = self.compose(overrides)
            arch = arch_label(cfg.model)
            trial.set_user_attr(st.ARCH_ATTR, arch)
            plan = plan_run(cfg, build=False)  # the config checked, the spec resolved
            vet_key, config_key = vetting_key(plan.spec, cfg, c.constraints), config_key_of(plan.spec, cfg)
            trial.set_user_attr(st.VET_KEY_ATTR, vet_key)
            trial.set_user_attr(st.CONFIG_KEY_ATTR, config_key)
            measured = cfg.trainer.max_memory_gb is None
            if recorder.reuse_rejection(
                trial, values, vet_key, named(arch, trial_label(trial)), measured_limit=measured
            ):
                return None
            if c.reuse_duplicates and recorder.reuse_duplicate(trial, values, overrides, key=config_key):
                return None
            plan.cost = dry_build(plan.spec, build=not self.jobs_vet)  # None: the job builds and checks it
            if plan.cost is not None:
                check_training_memory(plan.cost, cfg.trainer)  # before a weight is allocated
        except MemoryBudgetError as err:  # a constraint: the sampler learns to avoid it
            reason = f"{st.MEMORY_REJECTION}: {err}"
            recorder.reject(trial, values, reason, named(arch, trial_label(trial)), constraint=err.excess)
            return None
        except SpecError as err:
            recorder.reject(trial, values, f"invalid architecture: {err}", None, constraint=1.0)
            return None
        except Exception as err:  # noqa: BLE001 - e.g. a user block that raises while building
            recorder.fail_unlaunched(trial, values, f"{type(err).__name__}: {err}")
            return None
        spec_key = repr(plan.spec)
        label = trial_label(trial)
        constraints = OmegaConf.to_container(c.constraints, resolve=True)
        over = st.over_budget(c.constraints, plan.cost) if plan.cost is not None else None
        if over and label is None:
            reason, excess = over
            recorder.reject(trial, values, reason, named(arch, label), constraint=excess)
            return None
        if over:  # A baseline is the reference every trial is compared with: trained over budget
            # too, infeasible to the sampler and to the study's best trial, never a candidate.
            log.info(
                "t%02d %s is %s: trained as the reference, never chosen", trial.number, named(arch, label), over[0]
            )
            constraints.update(max_params=None, max_macs=None)
        if plan.cost is not None:  # (otherwise the job records them once it has checked its model)
            trial.set_constraint(st.CONSTRAINT_KEY, float(max(over[1], 1e-6)) if over else 0.0)  # (once only)
            trial.set_user_attr("params", plan.cost.trainable_params)
            trial.set_user_attr("macs", plan.cost.macs)
        ticket = TrialTicket(
            study_name=c.study_name,
            storage=c.storage,
            number=trial.number,
            monitor=self.monitor,
            pruner=OmegaConf.to_container(c.pruner, resolve=True),
            constraints=constraints,
            parent_run_id=self.parent_run_id,
            retry_of=retry_of,
            baseline=label,
            checkpoint_dir=None
            if self.checkpoints is None
            else trial_folder(self.checkpoints, c.study_name, trial.number, retry_of),
            keep_checkpoints=bool(c.keep_checkpoints),
        )
        return Pending(trial, values, named(arch, label), Job(overrides, ticket, composed=cfg), spec_key)

    def finish(self, study, objectives: list[str], book, status: str, reason: str | None) -> None:
        """The summary table, ``optimization_results.yaml``, the report; the parent run ends."""
        from experiments.sweep.report import study_summary, write_optimization_results
        from experiments.sweep.retrain import config_composer

        progress = self.recorder.progress
        sweep_dir = Path(self.config.hydra.sweep.dir)
        write_optimization_results(study, sweep_dir)
        # Run configs, not sweep jobs (the overlay may live on hydra.searchpath).
        compose = config_composer(
            config_name=self.config.hydra.job.config_name, searchpath=self.config.hydra.searchpath
        )
        summary = study_summary(study, objectives, compose)
        progress.summary(summary)
        report = sweep_dir / "report.html"
        if link := book.publish(study, summary, compose, report, (status, reason)):
            progress.note(f"MLflow: {link}")
        progress.report(report)

    def dry_run(self, sampler, params, fixed, hook, n: int) -> None:
        """Sample ``n`` architectures from the space and print them; no training, no storage."""
        from experiments.run import arch_label, plan_run
        from experiments.sweep.progress import print_plan

        study = optuna.create_study(sampler=sampler, directions=["maximize"] * len(self.compose(fixed).objective))
        rows = []
        for _ in range(n):
            trial = study.ask()
            overrides = [*fixed, *(format_override(k, v) for k, v in sample(trial, params, hook).items())]
            try:
                cfg = self.compose(overrides)
                plan = plan_run(cfg)
                verdict = st.over_budget(self.conf.constraints, plan.cost)
                row = (arch_label(cfg.model), plan.spec.feature_sizes(), plan.cost, verdict[0] if verdict else "ok")
            except SpecError as err:
                row = ("-", None, None, f"invalid: {err}")
            rows.append((trial.number, *row, overrides))
            study.tell(trial, state=TrialState.PRUNED)
        print_plan(rows)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def vetting_key(spec, cfg, constraints) -> str:
    """What a trial's vetting depends on: the resolved architecture (``repr`` of its spec:
    different overrides may resolve to the same one), the constraints and the settings of the
    memory estimate. Trials with equal keys get equal verdicts."""
    t = cfg.trainer
    memory = [t.batch_size, t.mixed_precision, t.optimizer, t.momentum, t.max_memory_gb]
    return _digest(repr(spec), OmegaConf.to_container(constraints, resolve=True), memory)


def config_key_of(spec, cfg) -> str:
    """What a trial trains: its spec, trainer and data settings and objectives (not its run's
    name or tracking). Trials with equal keys train the same thing."""
    return _digest(
        repr(spec), *(OmegaConf.to_container(cfg[k], resolve=True) for k in ("trainer", "data")), list(cfg.objective)
    )


@dataclass
class PlainLayer:
    """Any Hydra app: each job gets its sampled values as overrides, nothing else."""

    config: Any
    recorder: Recorder | None = None

    def prepare(self, trial, values: dict, overrides: list[str], retry_of: int | None) -> Pending:
        return Pending(trial, values, "", Job(overrides))

    def finish(self, study, objectives: list[str], book, status: str, reason: str | None) -> None:
        from experiments.sweep.report import write_optimization_results

        results = write_optimization_results(study, Path(self.config.hydra.sweep.dir))
        self.recorder.progress.plain_summary(study, objectives, results)

    def dry_run(self, sampler, params, fixed, hook, n: int) -> None:
        study = optuna.create_study(sampler=sampler)
        for _ in range(n):
            trial = study.ask()
            print(f"{trial.number}: " + " ".join(format_override(k, v) for k, v in sample(trial, params, hook).items()))
            study.tell(trial, state=TrialState.PRUNED)
