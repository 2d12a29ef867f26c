"""What users throw at a study: hard kills, dead workers, broken stores, failing trials, bad specs. Each case
ends in a clear error or a recovery, and loses nothing.

    python -m pytest tests/search/test_faults.py -q
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from core.paths import REPO_ROOT, mlruns_dir, studies_dir
from search.cli import main
from search.study import studies
from search.study.recovery import WORKER_DIED, worker_of
from search.tracking import get_client

SMOKE_BUDGET = 3  # the kill tests' smoke study: its two baselines and one sampled trial (small_smoke)


def _small_smoke_text() -> str:
    spec = yaml.safe_load((REPO_ROOT / "studies" / "smoke.yaml").read_text())
    spec["budget"]["n_trials"] = SMOKE_BUDGET
    # half the smoke's slice and no decode timing: the kill tests check recovery, not learning, and train
    # the budget twice
    spec["base"]["data"].update(train_limit=32, val_limit=8)
    spec["base"]["trainer"]["decode_speed_formulas"] = 0
    return yaml.safe_dump(spec, sort_keys=False)


@pytest.fixture
def small_smoke(isolated_home):
    """studies/smoke.yaml with a smaller budget in the isolated home (found before the repository's): a
    kill test's rerun trains the whole budget, and what it checks needs three trials, not six."""
    studies_dir().mkdir(parents=True, exist_ok=True)
    (studies_dir() / "smoke.yaml").write_text(_small_smoke_text())
    return isolated_home


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread each is faster on a shared 2-core box
    return env


def _running_trial(
    name: str, proc: subprocess.Popen, not_pid: int | None = None, timeout: float = 300.0, storage=None
):
    """The first RUNNING trial (of a worker other than `not_pid`) that has reported an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study ended before a trial could be caught mid-way"
        if storage is not None or (studies_dir() / f"{name}.journal").exists():
            try:
                study = studies.load_existing(name, storage)
            except LookupError:  # not created yet
                time.sleep(0.2)
                continue
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                pid = (worker_of(trial) or {}).get("pid")
                if pid and pid != not_pid and trial.intermediate_values:
                    return trial
        time.sleep(0.2)
    raise AssertionError("no trial reached its first epoch in time")


def _assert_nothing_running(name: str) -> None:
    study = studies.load_existing(name, None)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=1000)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def _assert_recovered(dead: optuna.trial.FrozenTrial) -> None:
    """The dead worker's trial failed as worker_died, ran again with its params, and the budget is met."""
    study = studies.load_existing("smoke", None)
    lost = study.trials[dead.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["reason"] == WORKER_DIED
    again = [t for t in study.trials if t.user_attrs.get("requeued_from") == dead.number]
    assert len(again) == 1 and again[0].params == lost.params
    assert again[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert again[0].user_attrs.get("baseline") == lost.user_attrs.get("baseline")
    assert studies.count_finished(study) == SMOKE_BUDGET
    _assert_nothing_running("smoke")


def _signal_mid_trial(args: list[str], signum: int, name: str = "smoke", storage=None):
    """Start `python -m search <args>` quietly, send `signum` once a trial has reported an epoch; returns
    that trial and the process's exit status."""
    cmd = [sys.executable, "-m", "search", *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        trial = _running_trial(name, proc, storage=storage)
        proc.send_signal(signum)
        return trial, proc.wait(timeout=60)
    finally:
        proc.kill()


@pytest.mark.slow
def test_kill_9_mid_trial_then_a_plain_rerun_runs_the_lost_trial_again(small_smoke):
    dead, _ = _signal_mid_trial(["study", "smoke"], signal.SIGKILL)
    assert main(["study", "smoke"]) == 0
    _assert_recovered(dead)


@pytest.mark.slow
def test_kill_9_of_one_of_two_workers_is_reported_and_the_budget_is_still_met(small_smoke):
    cmd = [sys.executable, "-m", "search", "study", "smoke", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        dead = _running_trial("smoke", proc, not_pid=proc.pid)
        os.kill(worker_of(dead)["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"(pid {worker_of(dead)['pid']}) died: killed by signal 9 (SIGKILL)" in out
    _assert_recovered(dead)


@pytest.mark.slow
def test_sigterm_mid_trial_then_the_resumed_study_runs_exactly_the_budget(small_smoke):
    cut, status = _signal_mid_trial(["study", "smoke"], signal.SIGTERM)
    assert status == 130
    assert main(["study", "smoke"]) == 0
    study = studies.load_existing("smoke", None)
    assert study.trials[cut.number].user_attrs["reason"] == "interrupted"
    assert studies.count_finished(study) == SMOKE_BUDGET
    counted = [t for t in study.trials if t.state != TrialState.FAIL]
    assert len(counted) == SMOKE_BUDGET  # one rerun of the cut trial, no trial short
    _assert_nothing_running("smoke")


def test_a_store_that_breaks_mid_study_fails_no_trial(fake_study, fake_training, monkeypatch):
    """mlruns/ unwritable, locked or full after the study started: trials train, untracked, noted."""
    fake = fake_training()
    calls = {"n": 0}
    client_class = get_client().__class__
    original = client_class.create_run

    def flaky_create_run(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise PermissionError("attempt to write a readonly database")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(client_class, "create_run", flaky_create_run)  # the parent run, trial 0, then none
    assert main(["study", fake_study, "--trials", "5"], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    untracked = [t for t in study.trials if "tracking_error" in t.user_attrs]
    assert untracked and all("readonly database" in t.user_attrs["tracking_error"] for t in untracked)
    monkeypatch.setattr(client_class, "create_run", original)
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(fake_study).experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_every_trial_failing_exits_non_zero_and_fails_the_parent_run(fake_study, fake_training, capsys):
    fake = fake_training(lambda config: "boom")
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 1
    assert "every trial of study" in capsys.readouterr().err
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(fake_study).experiment_id])
    parent = next(r for r in runs if r.info.run_name == f"study-{fake_study}")
    assert parent.info.status == "FAILED"


BAD_SPECS = {
    "yaml": "space: {optim.lr: {type: float, low: 1, high: [}\n",
    "unknown-key": "space: {optim.lr: {choices: [1]}}\nbugdet: {n_trials: 3}\n",
    "low-high": "space: {optim.lr: {type: float, low: 1.0e-2, high: 1.0e-3}}\n",
    "empty-choices": "space: {optim.lr: {choices: []}}\n",
    "negative-trials": "space: {optim.lr: {choices: [0.1]}}\nbudget: {n_trials: -1}\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_is_one_line_and_creates_nothing(isolated_home, capsys, case):
    (studies_dir()).mkdir(parents=True, exist_ok=True)
    (studies_dir() / f"bad-{case}.yaml").write_text("dataset: synth-small\n" + BAD_SPECS[case])
    assert main(["study", f"bad-{case}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert not list(studies_dir().glob("*.journal"))
    store = mlruns_dir() / "mlflow.db"
    assert not store.exists() or not [e for e in get_client().search_experiments() if e.name != "Default"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_a_study_name_with_a_path_in_it_is_refused(isolated_home, capsys, name):
    assert main(["study", name]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not list(isolated_home.rglob("*.journal"))


def test_a_missing_dataset_is_one_line_and_leaves_no_journal(isolated_home, capsys):
    studies_dir().mkdir(parents=True)
    (studies_dir() / "nodata.yaml").write_text(
        "dataset: data/none-here\nspace: {optim.lr: {choices: [0.1]}}\n"
    )
    assert main(["study", "nodata"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
    assert not (studies_dir() / "nodata.journal").exists()


def test_export_and_report_while_a_study_is_running(fake_study, fake_training, capsys):
    """A trial RUNNING in another (live) process: export and report read the finished ones."""
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    running = study.ask()  # as a live worker holds it
    running.set_user_attr("worker", {"host": "elsewhere", "pid": os.getpid()})
    assert main(["export", fake_study], train_fn=fake) == 0
    assert main(["report", fake_study], train_fn=fake) == 0
    assert study.trials[running.number].state == TrialState.RUNNING  # a live worker's trial is untouched


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_mid_trial_on_postgres_then_a_plain_rerun_runs_the_stale_trial_again(
    isolated_home, monkeypatch
):
    import uuid

    from tests.search.test_workers import _postgres_url

    url = _postgres_url()
    name = f"smoke-{uuid.uuid4().hex[:8]}"  # the server outlives the test: a study name of its own
    studies_dir().mkdir(parents=True, exist_ok=True)
    (studies_dir() / f"{name}.yaml").write_text(_small_smoke_text())
    monkeypatch.setenv("SEARCH_HEARTBEAT_S", "1")  # stale after 3 s instead of 3 min
    dead, _ = _signal_mid_trial(["study", name, "--storage", url], signal.SIGKILL, name, storage=url)
    # as if the worker had run on another machine: the pid check cannot judge it, the heartbeat does
    study = studies.load_existing(name, url)
    record = {**worker_of(dead), "host": "another-machine"}
    study._storage.set_trial_user_attr(dead._trial_id, "worker", record)
    time.sleep(4)  # past the grace period
    assert main(["study", name, "--storage", url]) == 0
    study = studies.load_existing(name, url)
    lost = study.trials[dead.number]
    assert lost.state == TrialState.FAIL
    again = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]  # Optuna's retry
    assert len(again) == 1 and again[0].params == lost.params
    assert again[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert studies.count_finished(study) == SMOKE_BUDGET
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=1000)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def test_a_store_file_corrupted_mid_study_fails_no_trial(fake_study, fake_training, monkeypatch, tmp_path):
    """A real fault, not a mock: the SQLite store is overwritten in place after the first trial."""
    store = tmp_path / "own" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    from core.mlflow_store import ensure_store
    from training.mlflow_logging import migrate_store

    ensure_store(store, migrate_store)
    calls = {"n": 0}

    def corrupt_after_the_first(config):
        calls["n"] += 1
        if calls["n"] == 2:
            with store.open("r+b") as f:  # same inode: open connections see it too
                f.write(b"\0" * 4096)
        return "ok"

    fake = fake_training(corrupt_after_the_first)
    assert main(["study", fake_study, "--trials", "4"], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert any("tracking_error" in t.user_attrs for t in study.trials[2:])


@pytest.mark.parametrize("blocked", ["studies", "mlruns"])
def test_an_unusable_studies_or_mlruns_folder_is_one_line_before_anything_runs(
    isolated_home, capsys, blocked
):
    """Root ignores chmod, so the folder is made unusable another way: a file where the folder should be."""
    (isolated_home / "studies").mkdir()
    (isolated_home / "studies" / "smoke.yaml").write_text((REPO_ROOT / "studies" / "smoke.yaml").read_text())
    if blocked == "studies":  # the journal cannot be created inside a "folder" that is a file
        (isolated_home / "studies" / "smoke.journal").mkdir()
    else:
        (isolated_home / "mlruns").write_text("not a folder")
    assert main(["study", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err


def test_a_journal_that_stops_taking_writes_mid_trial_is_one_line_and_the_rerun_recovers_the_trial(
    fake_study, fake_training, monkeypatch, capsys
):
    """A full disk (or a studies/ made read-only) after the trial's first epoch: Optuna cannot record the
    trial's end and used to raise `AssertionError: Should not reach`. Now: one line, exit 2, no MLflow run
    left RUNNING; once the disk has room, the same command fails the lost trial and runs it again."""
    import errno

    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._storage import JournalOperation

    fake = fake_training()
    append = JournalFileBackend.append_logs
    full = {"disk": False}

    def append_until_full(self, logs):
        if full["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(self._file_path))
        full["disk"] = any(log["op_code"] == JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE for log in logs)
        return append(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", append_until_full)
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(("error", "Traceback", "Assertion"))]
    assert len(lines) == 1 and "Should not reach" not in err, err
    assert "No space left on device" in lines[0] and f"{fake_study}.journal" in lines[0]
    assert "trial(s) [0], left RUNNING, are failed as worker_died and run again" in lines[0]
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(fake_study).experiment_id])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]

    monkeypatch.setattr(JournalFileBackend, "append_logs", append)  # room on the disk again
    # the real process exits after the error; here the trial is handed to a process that has exited
    exited = subprocess.Popen(["true"])
    exited.wait()
    study = studies.load_existing(fake_study, None)
    record = {**worker_of(study.trials[0]), "pid": exited.pid}
    study._storage.set_trial_user_attr(study.trials[0]._trial_id, "worker", record)
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    lost, rerun = study.trials[0], study.trials[1]
    assert lost.state == TrialState.FAIL and lost.user_attrs["reason"] == WORKER_DIED
    assert rerun.params == lost.params and rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_only_an_oserror_raised_in_optunas_storage_counts_as_a_lost_storage(tmp_path):
    """A broken pipe from a callback or an assertion of our own is not a storage failure: it keeps its own
    error instead of the 'make it writable' advice."""
    from optuna.storages.journal import JournalFileBackend

    from search.run.runner import storage_write_error

    path = tmp_path / "s.journal"
    backend = JournalFileBackend(str(path))
    path.unlink()
    path.mkdir()  # the journal's place taken: the storage's own append fails
    with pytest.raises(OSError) as own:
        backend.append_logs([{"op_code": 0}])
    assert storage_write_error(own.value) is own.value
    try:
        try:
            backend.append_logs([{"op_code": 0}])
        finally:  # as Optuna's _run_trial: its check fails while the storage's error propagates
            raise AssertionError("Should not reach.")
    except AssertionError as optunas:
        assert isinstance(storage_write_error(optunas), IsADirectoryError)

    def progress_callback():
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(OSError) as elsewhere:
        progress_callback()
    assert storage_write_error(elsewhere.value) is None
    assert storage_write_error(AssertionError("a check of ours")) is None


def test_a_journal_record_cut_short_is_dropped_and_the_study_loads_and_continues(
    fake_study, fake_training, caplog
):
    """A write cut short by a full disk leaves a last line without its newline; Optuna's next append would
    join it and the journal would never load again. The next run drops just that record."""
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "2"], train_fn=fake) == 0
    path = studies_dir() / f"{fake_study}.journal"
    intact = path.read_bytes()
    cut = b'{"op_code": 8, "worker_id": "x", "trial_id": 1, "user_attr": {"a": '
    path.write_bytes(intact + cut)
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    assert path.read_bytes().startswith(intact) and path.read_bytes().endswith(b"\n")
    assert f"dropped a {len(cut)}-byte last record" in caplog.text
    study = studies.load_existing(fake_study, None)
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
