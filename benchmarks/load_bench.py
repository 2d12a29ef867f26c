"""python -m benchmarks load: many workers on one PostgreSQL study, every trial counted (`make bench-load`).

Scenarios (each a fresh study on the same database, run one after another):
- single: 1 worker, the reference for the harness's overhead per trial;
- direct: N workers (default 16) with `--storage postgresql://...`;
- proxy:  N workers through Optuna's gRPC proxy (`python -m search storage-proxy`), `--storage grpc://...`;
- kill:   N workers direct, a quarter of them killed with SIGKILL at random moments (seeded), mid-trial or
          mid-write, wherever they are.

Each worker is `python -m search worker NAME` (benchmarks/load_worker.py) whose trainer sleeps and reports a
learning curve instead of training: the benchmark measures the harness (storage, sampler, pruner, MLflow,
recovery), which a real trainer would only hide. The spec has enqueued baselines, Hyperband pruning and a
region of lr that fails on purpose. MLflow logs to its own PostgreSQL database, as a shared tracking
server's backend would (a local SQLite file is not meant for dozens of writers). When the workers are done,
`python -m search study NAME` closes the study as docs/CLUSTER.md says (it also reruns what a dead worker
left). Then everything is counted (benchmarks/load_accounting.py) into benchmarks/load_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from benchmarks.load_accounting import DRIVER_APP, SAMPLES_LOST, ConnectionWatch, account, overhead, wait_for
from benchmarks.load_results import clean, render, update_results_doc
from benchmarks.search_results import machine
from core.paths import REPO_ROOT, runs_dir
from search.study.studies import code_version, count_finished

STORAGE = os.environ.get("BENCH_LOAD_STORAGE", "postgresql://postgres@127.0.0.1:5432/test")
MLFLOW_DB = "bench_load_mlflow"
OUT = REPO_ROOT / "benchmarks" / "load_results.json"
KILL_FRACTION = 0.25
BASELINES = ("baseline-small", "baseline-wide", "baseline-failing")

SPEC = """
# load benchmark: the harness under many workers (benchmarks/load_bench.py); training sleeps
dataset: synth-small
base:
  model: {{kind: transformer}}
  trainer: {{epochs: 4}}
space:
  model.d_model: {{choices: [32, 64, 128]}}
  model.nhead: {{choices: [2, 4, 8]}}
  model.dropout: {{type: float, low: 0.0, high: 0.5}}
  optim.lr: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
budget: {{n_trials: {trials}, max_epochs: 4}}
sampler: {{name: tpe, seed: 7, n_startup_trials: 16}}
pruner: {{name: hyperband, min_resource: 1, reduction_factor: 3}}
enqueue:
  - label: baseline-small
    params: {{model.d_model: 32, model.nhead: 2, model.dropout: 0.1, optim.lr: 1.0e-3}}
  - label: baseline-wide
    params: {{model.d_model: 128, model.nhead: 4, model.dropout: 0.1, optim.lr: 1.0e-2}}
  - label: baseline-failing   # its lr fails on purpose: an enqueued config that breaks still runs once
    params: {{model.d_model: 64, model.nhead: 4, model.dropout: 0.0, optim.lr: 0.08}}
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    via: str  # "direct" | "proxy"
    kill: float  # share of the workers killed with SIGKILL
    epoch_seconds: float


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    n, sleep = args.workers, args.epoch_seconds
    every = {
        # one worker at a fifth of the sleep: the same trials in a fifth of the time; its overhead is
        # measured net of the sleep, so the two are comparable
        "single": Scenario("single", 1, "direct", 0.0, sleep / 5),
        "direct": Scenario("direct", n, "direct", 0.0, sleep),
        "proxy": Scenario("proxy", n, "proxy", 0.0, sleep),
        "kill": Scenario("kill", n, "direct", KILL_FRACTION, sleep),
    }
    unknown = set(args.scenarios) - set(every)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {' '.join(every)}")
    return [every[name] for name in args.scenarios]


def run_scenario(scenario: Scenario, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    name = f"load-{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    (home / "studies" / f"{name}.yaml").write_text(textwrap.dedent(SPEC.format(trials=args.trials)))
    env = worker_env(home, scenario)
    _search(["study", name, "--storage", STORAGE, "--trials", "0"], env, check=True)
    proxy = start_proxy(env, args.proxy_port) if scenario.via == "proxy" else None
    storage = f"grpc://127.0.0.1:{args.proxy_port}" if proxy else STORAGE
    watch = ConnectionWatch(_dsn(STORAGE))
    watch.start()
    started, cpu_before = time.monotonic(), _children_cpu()
    try:
        workers = [_launch(["worker", name, "--storage", storage, "--no-progress"], env, i, home, name)
                   for i in range(scenario.workers)]  # fmt: skip
        killed = supervise(workers, name, args.trials, scenario, seed=args.seed)
        codes = [w.wait() for w in workers]
        cpu = {"workers": _children_cpu() - cpu_before}  # every worker reaped: their CPU, imports included
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGINT)
            proxy.wait(timeout=30)
        connections = watch.stop()
    wall = time.monotonic() - started
    cpu["proxy"] = _children_cpu() - cpu_before - cpu["workers"] if proxy is not None else 0.0
    study = optuna.load_study(study_name=name, storage=_driver_storage())
    before_close = count_finished(study)
    _search(["study", name, "--storage", STORAGE], env, check=False)
    return summarise(scenario, name, study, args.trials, wall, codes, killed, connections, before_close, cpu)


def summarise(scenario, name, study, budget, wall, codes, killed, connections, before_close, cpu) -> dict:
    from search.tracking import get_client

    client = get_client()
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=50_000) if experiment else []
    counted = count_finished(study)
    timed = overhead(study, scenario.epoch_seconds)
    return {
        "study": name,
        "code_version": code_version(),
        "workers": scenario.workers,
        "via": scenario.via,
        "epoch_seconds": scenario.epoch_seconds,
        "killed_workers": len(killed),
        "kills_at_finished_trials": killed,
        "worker_exit_codes": dict(sorted(Counter(map(str, codes)).items())),
        "trials_budget": budget,
        "trials_by_workers": before_close,
        "trials_by_closing_study": counted - before_close,
        "wall_s": round(wall, 1),
        "trials_per_s": round(before_close / wall, 3),
        **timed,
        # wall-clock overhead grows with the processes sharing the cores; CPU seconds do not
        "worker_cpu_s_per_trial": round(cpu["workers"] / max(before_close, 1), 3),
        "proxy_cpu_s_per_trial": round(cpu["proxy"] / max(before_close, 1), 3),
        "pg_connections_peak": {
            "optuna": connections.get(_dbname(STORAGE), 0),
            "mlflow": connections.get(MLFLOW_DB, 0),
            "total": connections["total"],
            "samples_lost": connections.get(SAMPLES_LOST, 0),  # the watch's own connection was dropped
        },
        "accounting": account(study, budget, runs, list(BASELINES)),
    }


def supervise(workers: list[subprocess.Popen], name: str, budget: int, scenario: Scenario, *, seed: int):
    """Print progress until every worker has exited; SIGKILL the scenario's share of them, each when the
    study's count reaches a seeded random point between 10 % and 80 % of the budget."""
    rng = random.Random(seed)
    n_kill = round(len(workers) * scenario.kill)
    points = sorted(rng.uniform(0.1, 0.8) * budget for _ in range(n_kill))
    victims = rng.sample(range(len(workers)), n_kill)
    killed: list[int] = []
    study = optuna.load_study(study_name=name, storage=_driver_storage())
    start, last_print = time.monotonic(), 0.0
    while any(w.poll() is None for w in workers):
        done = count_finished(study)
        while points and done >= points[0]:
            points.pop(0)
            victim = workers[victims.pop(0)]
            if victim.poll() is None:
                victim.kill()
                killed.append(done)
        if time.monotonic() - last_print > 10:
            last_print = time.monotonic()
            elapsed = last_print - start
            eta = elapsed / done * (budget - done) if done else None
            alive = sum(w.poll() is None for w in workers)
            print(f"  {name}: {done}/{budget} trials, {alive} worker(s) alive, {elapsed:.0f} s"
                  + (f", ~{eta:.0f} s left" if eta is not None else ""), flush=True)  # fmt: skip
        time.sleep(0.5)
    return killed


def worker_env(home: Path, scenario: Scenario) -> dict[str, str]:
    env = {
        **os.environ,
        "IM2LATEX_HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": _with_db(STORAGE, MLFLOW_DB),
        "LOAD_EPOCH_SECONDS": str(scenario.epoch_seconds),
    }
    env.pop("SEARCH_WORKER_INDEX", None)
    return env


def _launch(argv: list[str], env: dict[str, str], index: int, home: Path, name: str) -> subprocess.Popen:
    # distinct sampler streams without relying on pids (10000+: make study's own workers use small ones)
    log = (home / "logs" / f"{name}-worker{index}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "benchmarks.load_worker", *argv],
                            env={**env, "SEARCH_WORKER_INDEX": str(10_000 + index)}, cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def _search(argv: list[str], env: dict[str, str], *, check: bool) -> int:
    done = subprocess.run([sys.executable, "-m", "benchmarks.load_worker", *argv], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True)  # fmt: skip
    if check and done.returncode != 0:
        raise RuntimeError(f"search {' '.join(argv[:2])} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.returncode


def start_proxy(env: dict[str, str], port: int) -> subprocess.Popen:
    proxy = subprocess.Popen([sys.executable, "-m", "search", "storage-proxy", "--storage", STORAGE,
                              "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    if not wait_for(listening, timeout=60):
        proxy.kill()
        raise RuntimeError(f"the storage proxy did not listen on port {port} within 60 s")
    return proxy


def prepare_home() -> Path:
    """A home of its own (studies/, logs/) that shares the checkout's data/ (synth-small, rendered once)."""
    home = runs_dir() / "bench-load"
    for sub in ("studies", "logs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    data = home / "data"
    if not data.exists():
        (REPO_ROOT / "data").mkdir(exist_ok=True)
        data.symlink_to(REPO_ROOT / "data", target_is_directory=True)
    return home


def ensure_mlflow_database() -> None:
    import psycopg2

    db = psycopg2.connect(_dsn(STORAGE), application_name=DRIVER_APP)
    db.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (MLFLOW_DB,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{MLFLOW_DB}"')
    finally:
        db.close()


def _driver_storage() -> optuna.storages.RDBStorage:
    # tagged, so the connection count leaves the benchmark's own polling out
    url = STORAGE.replace("postgresql://", "postgresql+psycopg2://", 1)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"application_name": DRIVER_APP}})


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def _with_db(url: str, db: str) -> str:
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not installed
    return _dsn(url).replace("postgresql://", "postgresql+psycopg2://", 1).rsplit("/", 1)[0] + "/" + db


def _children_cpu() -> float:
    """User + system CPU seconds of every child process this benchmark has reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def totals(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline comparisons, where both sides were measured."""
    out: dict[str, Any] = {}
    single, direct, proxy = (results.get(k) for k in ("single", "direct", "proxy"))
    if single and direct and single.get("overhead_s_per_trial"):
        ratio = direct["overhead_s_per_trial"] / single["overhead_s_per_trial"]
        out["overhead_ratio_n_vs_1"] = round(ratio, 2)
        if single.get("worker_cpu_s_per_trial"):
            cpu_ratio = direct["worker_cpu_s_per_trial"] / single["worker_cpu_s_per_trial"]
            out["cpu_per_trial_ratio_n_vs_1"] = round(cpu_ratio, 2)
    if direct and proxy:
        out["optuna_connections_saved_by_proxy"] = (
            direct["pg_connections_peak"]["optuna"] - proxy["pg_connections_peak"]["optuna"]
        )
    out["every_trial_accounted"] = all(clean(r["accounting"]) for r in results.values())
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--workers", type=int, default=16, help="workers per multi-worker scenario (16; 64 needs ~25 GB RAM)")
    add("--trials", type=int, default=320, help="the study's budget of trials (320)")
    add("--epoch-seconds", type=float, default=0.5, help="the sleeping trainer's epoch (0.5 s; 4 a trial)")
    add("--scenarios", nargs="+", default=["single", "direct", "proxy", "kill"])
    add("--seed", type=int, default=0, help="where the kills land")
    add("--proxy-port", type=int, default=13077)
    add("--out", type=Path, default=OUT)
    add("--render", action="store_true", help="only rewrite RESULTS.md's block from the JSON")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.out)
    plan = scenarios(args)
    home = prepare_home()
    ensure_mlflow_database()
    os.environ["MLFLOW_TRACKING_URI"] = _with_db(STORAGE, MLFLOW_DB)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = dict(previous.get("scenarios", {}))
    for scenario in plan:
        what = f"{scenario.workers} worker(s) via {scenario.via}, {args.trials} trials"
        print(f"== {scenario.name}: {what}", flush=True)
        results[scenario.name] = run_scenario(scenario, args, home)
        print(json.dumps(results[scenario.name]["accounting"]), flush=True)
        write(args.out, results)
    if args.out == OUT:
        update_results_doc(json.loads(OUT.read_text()))
    return 0 if totals(results)["every_trial_accounted"] else 1


def write(out: Path, results: dict[str, dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "code_version": code_version(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "storage": STORAGE,
        "trainer": "benchmarks/load_worker.py SleepingTrainer (sleeps, reports a curve)",
        **totals(results),
        "scenarios": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
