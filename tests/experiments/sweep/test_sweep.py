"""Real sweeps on digits: Optuna storage + MLflow store read back after the process ends."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.experiments.conftest import REPO

# A tiny network, 3 epochs: each trial takes a few seconds on 2 cores.
SMALL = [
    "model.depths=[1,1,1]",
    "model.widths=[8,8,16]",
    "model.stem_width=8",
    "trainer.epochs=3",
    "trainer.batch_size=128",
    "tracking.log_model=false",
]


def sweep_call(tmp_path, *overrides, name="quick") -> dict:
    """``subprocess.run`` arguments for ``python -m experiments.run +sweep=<name> ...`` in ``tmp_path``."""
    # PYTHONPATH: the test plugins (tests.plugins.faulty) import from the repository root.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_RUN_ID", None)
    args = [sys.executable, "-m", "experiments.run", f"+sweep={name}", *SMALL,
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
            f"hydra.searchpath=[file://{REPO / 'tests' / 'conf'}]", *overrides]  # fmt: skip
    return {"args": args, "cwd": tmp_path, "env": env}


def sweep(tmp_path, *overrides, check=True, timeout=600, name="quick"):
    """Run ``python -m experiments.run +sweep=<name> ...`` in ``tmp_path``; return the process."""
    proc = subprocess.run(
        **sweep_call(tmp_path, *overrides, name=name), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def load(tmp_path, name="quick"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def mlflow_runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resnet-blocks")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
    return client, parents, children


def by_trial(children):
    out = {}
    for r in children:
        out.setdefault(int(r.data.tags["sweep.trial"]), []).append(r)
    return out


def test_sweep_with_pruning_mirrors_optuna_in_mlflow(tmp_path):
    # Grid over a good and a hopeless learning rate: the median pruner stops hopeless trials.
    proc = sweep(tmp_path, name="t_pruning")
    study = load(tmp_path)
    states = [t.state for t in study.trials]
    assert len(study.trials) == 4
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states, states
    assert study.metric_names == ["val/accuracy"]  # (optuna-dashboard shows the objective's name)
    # Pruned trials stopped early: fewer reported epochs than complete ones.
    for t in study.trials:
        if t.state == TrialState.PRUNED:
            assert len(t.intermediate_values) < 3
    client, parents, children = mlflow_runs(tmp_path)
    (parent,) = parents
    assert parent.info.status == "FINISHED" and parent.info.run_name == "quick"
    runs = by_trial(children)
    assert sorted(runs) == [0, 1, 2, 3] and all(len(v) == 1 for v in runs.values())
    for t in study.trials:
        (run,) = runs[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep.study"] == "quick"
        assert run.data.tags["sweep.state"] == t.state.name
        assert run.info.status == "FINISHED"  # COMPLETE and PRUNED both end FINISHED
        assert run.info.run_name.startswith(f"t{t.number:02d} regular d1-1-1")
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")]
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert "stopped_early" in run.data.tags if t.state == TrialState.PRUNED else True
        # Logged before training, so pruned trials have their model summary and cost too.
        assert {"model_summary.txt", "cost.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        # The exact overrides to reproduce the trial are recorded.
        assert any(o.startswith("trainer.learning_rate=") for o in t.user_attrs["overrides"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "trials.csv", "best_config.yaml", "plots", "report.html"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots and "plots/parallel_coordinate.png" in plots
    # The retrain command: the trial's architecture at the base config's budget, with its model logged.
    (retrain,) = [line.split("retrain: ", 1)[1] for line in proc.stdout.splitlines() if "retrain: " in line]
    assert "+sweep" not in retrain and "trainer.epochs" not in retrain and "tracking.log_model" not in retrain
    assert "'model.depths=[1,1,1]'" in retrain and "model.stem_width=8" in retrain
    # Worker processes are replaced only when they grow: four small trials share the two
    # workers (one trains while the other sets up the next trial: hydra.sweeper.prefetch=1).
    assert len({t.user_attrs["job_pid"] for t in study.trials}) == 2
    # One trial trains at a time: trial k+1 starts training (its slot-wait metric is logged
    # then) after trial k's last epoch, but its job started (MLflow run opened, model built)
    # before that at least once: its set-up overlapped the previous trial's training.
    spans = []
    for t in sorted(study.trials, key=lambda t: t.number):
        (run,) = runs[t.number]
        (began,) = client.get_metric_history(run.info.run_id, "perf/slot_wait_s")
        epochs = client.get_metric_history(run.info.run_id, "perf/epoch_train_s")
        spans.append((run.info.start_time, began.timestamp, max(m.timestamp for m in epochs)))
    spans.sort(key=lambda s: s[1])
    assert all(prev[2] <= nxt[1] for prev, nxt in zip(spans, spans[1:])), spans
    assert any(nxt[0] < prev[2] for prev, nxt in zip(spans, spans[1:])), spans
    # The HTML report: in the parent run and in the sweep directory, curves from the MLflow runs.
    page = (tmp_path / "multirun" / "report.html").read_text()
    assert page == open(client.download_artifacts(parent.info.run_id, "report.html")).read()
    best = study.best_trial
    assert f"#1: t{best.number:02d} {best.user_attrs['arch']}" in page
    assert '<svg class="arch"' in page and "MLflow runs." in page
    assert f"report: {tmp_path / 'multirun' / 'report.html'}" in proc.stdout


def test_workers_that_grow_are_replaced(tmp_path):
    # Any growth over 0.001 MB after a worker's first trial replaces it once no trial is in
    # flight: two workers (prefetch) run two trials each, then fresh workers take the fifth.
    from tests.parallel import run_together

    (tmp_path / "bad").mkdir()
    ok, bad = run_together([
        sweep_call(tmp_path, "hydra.sweeper.n_trials=5", "trainer.epochs=1", "hydra/launcher=resnet_blocks_process",
                   "hydra.launcher.max_worker_growth_mb=0.001", "hydra.sweeper.pruner.name=none"),
        sweep_call(tmp_path / "bad", "hydra/launcher=resnet_blocks_process", "hydra.launcher.max_worker_growth_mb=0"),
    ], timeout=600)  # fmt: skip
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    trials = sorted(load(tmp_path).trials, key=lambda t: t.number)
    pids = [t.user_attrs["job_pid"] for t in trials]
    assert len(pids) == 5 and max(pids.count(p) for p in pids) <= 2 and len(set(pids)) >= 3, pids
    assert pids[4] not in pids[:4] and all(t.state == TrialState.COMPLETE for t in trials), pids
    assert bad.returncode != 0 and "hydra.launcher.max_worker_growth_mb: received 0" in bad.stdout + bad.stderr


def test_without_prefetch_one_worker_trains_trials_one_after_another(tmp_path):
    sweep(tmp_path, "hydra.sweeper.n_trials=3", "trainer.epochs=1", "hydra.sweeper.prefetch=0",
          "hydra.sweeper.pruner.name=none", name="t_pruning")  # fmt: skip
    trials = load(tmp_path).trials
    assert len({t.user_attrs["job_pid"] for t in trials}) == 1 and len(trials) == 3
    client, _, children = mlflow_runs(tmp_path)
    for run in children:  # nothing to wait for: the only worker trains each job as it comes
        (wait_s,) = client.get_metric_history(run.info.run_id, "perf/slot_wait_s")
        assert wait_s.value < 0.05, wait_s


def test_repeated_configurations_reuse_values_instead_of_training(tmp_path):
    # Two possible configurations, four trials (TPE's random start-up): at least two repeat one.
    sweep(tmp_path, "hydra.sweeper.n_trials=4", "trainer.epochs=1", "hydra/launcher=basic",
          "hydra.sweeper.pruner.name=none", "trainer.learning_rate=0.05",
          "model.block=choice(regular,regular_v1)")  # fmt: skip
    trials = {t.number: t for t in load(tmp_path).trials}
    dups = {n: t.user_attrs["duplicate_of"] for n, t in trials.items() if "duplicate_of" in t.user_attrs}
    assert len(dups) >= 2 and len(trials) == 4
    for n, original in dups.items():
        assert trials[n].state == TrialState.COMPLETE and trials[n].values == trials[original].values
        assert not trials[n].intermediate_values and "duplicate_of" not in trials[original].user_attrs
        assert trials[n].user_attrs["overrides"] == trials[original].user_attrs["overrides"]
    _, _, children = mlflow_runs(tmp_path)
    tagged = {int(r.data.tags["sweep.trial"]): r.data.tags.get("sweep.duplicate_of") for r in children}
    assert {n: int(v) for n, v in tagged.items() if v is not None} == dups


def test_a_sweep_resumed_at_its_end_stops_its_starting_workers_quietly(tmp_path):
    # Through the process pool, whose workers start while the sweeper finds the study done.
    sweep(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.baselines=[]", "trainer.epochs=1")
    again = sweep(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.baselines=[]", "trainer.epochs=1")
    assert len(load(tmp_path).trials) == 1
    assert "Traceback" not in again.stderr and "Error" not in again.stderr, again.stderr[-3000:]


def test_resume_reaches_exactly_n_trials_under_one_parent(tmp_path):
    # First invocation stops (timeout) after its first trial; the rerun completes the total.
    fast = "hydra/launcher=basic"  # in-process trials: no second TensorFlow import per invocation
    sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.timeout=0.5", "hydra.sweeper.pruner.name=none", fast)
    assert len(load(tmp_path).trials) == 1
    _, parents, _ = mlflow_runs(tmp_path)
    first_parent = parents[0].info.run_id
    proc = sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.name=none", fast)
    assert "resuming with 1 done" in proc.stdout
    study = load(tmp_path)
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.name=none", fast)  # already done: no new trial
    assert len(load(tmp_path).trials) == 3
    _, parents, children = mlflow_runs(tmp_path)
    assert [p.info.run_id for p in parents] == [first_parent]
    assert sorted(by_trial(children)) == [0, 1, 2] and len(children) == 3
    assert all(r.info.status == "FINISHED" for r in children)

    # optuna-dashboard opens the same storage and lists the study.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dash = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "optuna-dashboard"), f"sqlite:///{tmp_path / 'optuna.db'}",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    studies = json.load(resp)["study_summaries"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("optuna-dashboard did not start")
        assert [s["study_name"] for s in studies] == ["quick"]
    finally:
        dash.terminate()
        dash.wait(timeout=10)


# The sweeper checks each model before the basic launcher runs it; with the process launcher
# each job checks its own (it builds it anyway), before it records anything. Both record the same.
VETTED_BY = pytest.mark.parametrize("launcher", ["basic", "resnet_blocks_process"])


@VETTED_BY
def test_failing_trials_are_recorded_and_the_sweep_continues(tmp_path, launcher):
    sweep(tmp_path, f"hydra/launcher={launcher}", name="t_faults")
    study = load(tmp_path)
    by_block = {t.params["model.block"]: t for t in study.trials}
    assert by_block["regular"].state == TrialState.COMPLETE
    assert by_block["nan_regular"].state == TrialState.FAIL
    assert "non-finite" in by_block["nan_regular"].user_attrs["fail_reason"]
    assert by_block["crash_regular"].state == TrialState.FAIL
    assert "injected failure" in by_block["crash_regular"].user_attrs["fail_reason"]
    _, _, children = mlflow_runs(tmp_path)
    runs = by_trial(children)
    for t in study.trials:
        (run,) = runs[t.number]
        assert run.info.status == ("FINISHED" if t.state == TrialState.COMPLETE else "FAILED")
        assert run.data.tags["sweep.state"] == t.state.name


def test_failure_rate_limit_aborts_a_hopeless_sweep(tmp_path):
    proc = sweep(
        tmp_path,
        "model.plugins=[tests.plugins.faulty]",
        "model.block=crash_regular",
        "+model.block_args.crash_width=16",  # every sampled width list contains 16
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_failure_rate=0.5",
        "hydra.sweeper.min_trials_for_failure_rate=2",
        "hydra/launcher=basic",
        check=False,
    )
    assert proc.returncode != 0
    assert "sweep aborted: 2 of 2 finished trials failed" in proc.stdout + proc.stderr
    assert len(load(tmp_path).trials) == 2
    _, (parent,), _ = mlflow_runs(tmp_path)
    assert parent.info.status == "FAILED" and "sweep aborted" in parent.data.tags["failure_reason"]


@VETTED_BY
def test_constraints_reject_before_training(tmp_path, launcher):
    # The 4-stage space, restated on the command line (a plain value would fix the key instead).
    # All 4 points of the grid: one trains (w8 s1222), one is over budget, two are invalid.
    proc = sweep(tmp_path, "model.widths=choice([8,8,8,8],[64,64,64,64])", "model.strides=choice([1,2,2,2],[2,2,2,2])",
                 "model.depths=[1,1,1,1]", "hydra.sweeper.n_trials=4", f"hydra/launcher={launcher}", name="t_constraints")  # fmt: skip
    assert "already set" not in proc.stderr  # the check is recorded once (else Optuna warns)
    study = load(tmp_path)
    assert len(study.trials) == 4
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 1
    rejected = {t.number: t.user_attrs["rejected"] for t in study.trials if "rejected" in t.user_attrs}
    assert any("over budget" in r and "max_params 30,000" in r for r in rejected.values()), rejected
    assert any("invalid architecture" in r and "below 1x1" in r for r in rejected.values()), rejected
    for t in study.trials:
        if t.number in rejected:
            assert t.state == TrialState.PRUNED and not t.intermediate_values  # never trained
            assert t.constraints["budget"] > 0  # infeasible, for constrained samplers
    client, _, children = mlflow_runs(tmp_path)
    for number, run_list in by_trial(children).items():
        (run,) = run_list
        if number in rejected:
            assert run.data.tags["sweep.rejected"] == rejected[number]
            assert run.info.status == "FINISHED" and not run.data.metrics
        else:  # recorded by the sweeper's check or by the job's
            trial = study.trials[number]
            assert 0 < trial.user_attrs["params"] <= 30_000 and trial.user_attrs["macs"] > 0
            assert trial.constraints == {"budget": 0.0}


def test_a_macs_budget_is_decided_in_the_sweeper_and_repeats_are_answered_from_the_study(tmp_path):
    # Through the process launcher, whose jobs build their models: two widths, one over max_macs,
    # and two blocks that stage_blocks overrides (other overrides, the same spec). Rejections
    # take no trained trial's place: the sweep ends with n_trials trials trained or reused.
    sweep(tmp_path, "hydra.sweeper.n_trials=2", "trainer.epochs=1", "hydra.sweeper.pruner.name=none",
          "hydra.sweeper.prefetch=0", "trainer.learning_rate=0.05", "hydra.sweeper.baselines=[]",
          "model.stage_blocks=[regular,regular,regular]", "model.widths=choice([8,8,16],[32,32,64])",
          "model.block=choice(regular,regular_v1)", "hydra.sweeper.constraints.max_macs=500000")  # fmt: skip
    trials = load(tmp_path).trials
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2 and len(trials) == 2 + len(rejected)
    first, *repeats = rejected
    assert repeats and first.user_attrs["rejected"] == "over budget: 1,258,624 MACs > max_macs 500,000"
    for t in rejected:  # decided in the sweeper, from the spec: no job ran (a job records its pid)
        assert t.state == TrialState.PRUNED and "job_pid" not in t.user_attrs and not t.intermediate_values
    for t in repeats:  # answered from the study: the same reason and constraint value
        assert t.user_attrs["duplicate_of"] == first.number and t.constraints == first.constraints
        assert t.user_attrs["rejected"] == first.user_attrs["rejected"]
    assert any(t.params["model.block"] != first.params["model.block"] for t in repeats)  # by spec, not overrides
    _, _, children = mlflow_runs(tmp_path)
    runs = by_trial(children)
    for t in rejected:
        (run,) = runs[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["sweep.rejected"] == t.user_attrs["rejected"]
        assert run.data.tags.get("sweep.duplicate_of") == (None if t is first else str(first.number))
    (trained,) = [t for t in trials if "job_pid" in t.user_attrs]
    (run,) = runs[trained.number]  # a trial loads no test images (they exist: counted, not loaded)
    assert run.data.metrics["data/num_test"] == 270 and not any(k.startswith("test/") for k in run.data.metrics)


def test_multiobjective_sweep_reports_a_pareto_front(tmp_path):
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "trainer.epochs=1",
        "hydra.sweeper.study_name=mo",
        "hydra/launcher=basic",
        name="multiobjective",
    )
    study = load(tmp_path, "mo")
    assert len(study.directions) == 2
    assert all(len(t.values) == 2 for t in study.trials if t.state == TrialState.COMPLETE)
    client, (parent,), _ = mlflow_runs(tmp_path)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "pareto_front.json" in artifacts
    assert "plots/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    front = json.loads(open(client.download_artifacts(parent.info.run_id, "pareto_front.json")).read())
    assert front and all(len(p["values"]) == 2 for p in front)
    page = open(client.download_artifacts(parent.info.run_id, "report.html")).read()
    assert "first two objectives" in page
    assert "Pareto front" in proc.stdout or "best t" in proc.stdout


def test_dry_run_prints_architectures_without_training(tmp_path):
    proc = sweep(tmp_path, "hydra.sweeper.dry_run=5")
    assert "dry run: 5 sampled architectures" in proc.stdout
    assert "8x8" in proc.stdout and "Epoch" not in proc.stdout
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_command_line_overrides_replace_the_sweep_configs_space(tmp_path):
    # `blocks` searches model.block over three blocks and model.depths over six lists: a
    # command-line choice replaces the first, a plain value (SMALL's depths) fixes the second.
    proc = sweep(
        tmp_path,
        "hydra.sweeper.baselines=[]",
        "hydra.sweeper.dry_run=6",
        "model.block=choice(regular_v1,bottleneck_v1)",
        name="blocks",
    )
    lines = [ln.split(": ", 1)[1].split() for ln in proc.stdout.splitlines() if re.match(r"^\d+: ", ln)]
    assert len(lines) == 6
    for args in lines:
        blocks = [a for a in args if a.startswith("model.block=")]
        assert len(blocks) == 1 and blocks[0] in ("model.block=regular_v1", "model.block=bottleneck_v1"), args
        assert [a for a in args if a.startswith("model.depths=")] == ["model.depths=[1,1,1]"], args
    # List values print as given (not eaten as console markup).
    assert "model.widths=[8,8,16]" in proc.stdout


def test_bad_sweep_settings_fail_before_any_trial(tmp_path):
    from tests.parallel import run_together

    cases = [
        ("hydra.sweeper.sampler.name=annealing", "hydra.sweeper.sampler.name: received 'annealing'"),
        ("hydra.sweeper.n_jobs=2", "SQLite"),
        ("hydra.sweeper.prefetch=-1", "hydra.sweeper.prefetch: received -1; allowed: an integer >= 0"),
    ]
    dirs = [tmp_path / str(i) for i in range(len(cases))]
    for d in dirs:
        d.mkdir()
    procs = run_together([sweep_call(d, override) for d, (override, _) in zip(dirs, cases)])
    for d, (override, message), proc in zip(dirs, cases, procs):
        assert proc.returncode == 2, (override, proc.stdout + proc.stderr)
        assert message in proc.stderr + proc.stdout, (override, proc.stdout + proc.stderr)
        assert not (d / "optuna.db").exists()


def test_in_a_terminal_a_live_board_follows_the_trials_in_flight(tmp_path):
    # A pseudo-terminal, as a person would run it: the board (the study's bar, each trial's
    # epoch) shows, the jobs' own lines go to their log files only, and the run ends as usual.
    import pty

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO),
           "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"}  # fmt: skip
    env.pop("MLFLOW_RUN_ID", None)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", "+sweep=quick", *SMALL, "hydra.sweeper.n_trials=3", "hydra.sweeper.baselines=[]",
         "trainer.epochs=4", "trainer.batch_size=16",  # (epochs long enough for the board to see one) f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env=env, stdin=child, stdout=child, stderr=child,
    )  # fmt: skip
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # (EIO: the child side closed)
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=600) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert re.search(r"trials .*\d/3", text), text[-3000:]  # the study's bar
    assert re.search(r"t0\d .*epoch [1-4]/4 +val/accuracy=0\.\d{4}", text), text[-3000:]  # a trial's line
    assert "report:" in text and "COMPLETE" in text
    assert not re.search(r"t0\d epoch \d/4: train/loss=", text)  # the jobs' lines: in their files only
    logs = "".join(p.read_text() for p in (tmp_path / "multirun").rglob("run.log"))
    assert re.search(r"t0\d epoch \d/4: train/loss=", logs)
