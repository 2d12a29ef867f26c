"""Worker processes for one study: one per visible GPU (pinned with CUDA_VISIBLE_DEVICES), or k on CPU.
A worker that dies (kill -9, a crash, a GPU left unusable: EXIT_GPU_UNUSABLE) is reported and replaced
while trials are left.

    python -m search study transformer --workers 4       # TRIALS_PER_GPU=2 packs two workers per GPU

Workers packed on one GPU each get an equal share of its memory
(`torch.cuda.set_per_process_memory_fraction`), so one large trial hits its own out-of-memory (retried
smaller, then pruned) instead of starving its neighbour; their decode-speed figures are flagged as shared.
The machine's cores are split between all workers (OMP_NUM_THREADS), GPU workers included: a GPU worker's
loader processes take their count from it.

Each worker is `python -m search worker NAME --trials n`; they share the study through its storage
(journal file or RDB), so the trial budget is split between them and nothing is counted twice.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from core.paths import REPO_ROOT
from search.study.devices import GPU_SHARE_ENV
from search.study.studies import WORKER_INDEX_ENV
from training.runtime import machine_cores

log = logging.getLogger(__name__)

EXIT_GPU_UNUSABLE = 3  # a worker's exit code after a sticky CUDA error: replace it with a fresh process


def plan_slots(workers: int | None, gpus: list[str], trials_per_gpu: int) -> list[str | None]:
    """One entry per worker: the GPU id it is pinned to, or None on CPU."""
    if not gpus:
        return [None] * max(workers or 1, 1)
    slots = [gpu for gpu in gpus for _ in range(max(trials_per_gpu, 1))]
    if workers:
        slots = [slots[i % len(slots)] for i in range(workers)]
    return slots


def split_trials(n_trials: int, n_workers: int) -> list[int]:
    """n_trials over n_workers, as even as possible; workers with 0 trials are dropped."""
    shares = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    return [s for s in shares if s > 0]


def describe_exit(code: int) -> str:
    """-9 -> 'killed by signal 9 (SIGKILL)'; 3 -> 'exit code 3'."""
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Fleet:
    """The worker processes of one `launch`: started, watched, replaced, stopped."""

    def __init__(self, name: str, slots: list[str | None], storage_url: str | None):
        self.name, self.slots, self.storage_url = name, slots, storage_url
        self.procs: list[tuple[int, str | None, subprocess.Popen]] = []
        self.assigned: dict[int, int] = {}  # pid -> trials it was given
        self.deaths: list[str] = []
        self.seen: set[int] = set()  # pids whose death is reported

    def start(self, index: int, slot: str | None, trials: int) -> None:
        env = dict(os.environ)
        env[WORKER_INDEX_ENV] = str(index)  # each worker's sampler draws its own stream
        # workers split the cores instead of each starting a thread (or a loader process) per core
        env.setdefault("OMP_NUM_THREADS", str(max(1, machine_cores() // len(self.slots))))
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
            env[GPU_SHARE_ENV] = str(self.slots.count(slot))
        cmd = [sys.executable, "-m", "search", "worker", self.name, "--trials", str(trials), "--no-progress"]
        if self.storage_url:
            cmd += ["--storage", self.storage_url]
        proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
        self.procs.append((index, slot, proc))
        self.assigned[proc.pid] = trials

    def running(self) -> bool:
        return any(p.poll() is None for _, _, p in self.procs)

    def replace_dead(self, remaining: Callable[[dict[int, int]], int] | None) -> None:
        for index, slot, p in list(self.procs):
            code = p.poll()
            if code is None or code in (0, 130) or p.pid in self.seen:
                continue
            self.seen.add(p.pid)
            report = f"worker {index} (pid {p.pid}) died: {describe_exit(code)}"
            self.deaths.append(report)
            log.warning("%s", report)
            live = {q.pid: self.assigned[q.pid] for _, _, q in self.procs if q.poll() is None}
            left = remaining(live) if remaining is not None else 0
            # one that keeps dying is not replaced forever; one that exited 2 (a user error, a storage that
            # takes no writes) would only fail the same way; one that exited EXIT_GPU_UNUSABLE left a dead
            # CUDA context behind, which a new process does not have
            if left > 0 and len(self.deaths) <= len(self.slots) and code != 2:
                log.warning("starting a replacement worker for the %d trial(s) left", left)
                self.start(index + 100 * len(self.deaths), slot, left)

    def stop(self) -> None:
        """The children share our terminal's process group and got the same Ctrl-C; give them time to
        close their trial and MLflow run, then make sure they are gone."""
        for _, _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for _, _, p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()

    def note_last_deaths(self) -> None:
        for index, _, p in self.procs:  # one that died in the last poll interval
            if p.returncode not in (0, 130) and p.pid not in self.seen:
                self.deaths.append(f"worker {index} (pid {p.pid}) died: {describe_exit(p.returncode)}")


def launch(
    name: str,
    slots: list[str | None],
    n_trials: int,
    storage_url: str | None,
    poll: Callable[[], None] | None = None,
    poll_every_s: float = 2.0,
    remaining: Callable[[dict[int, int]], int] | None = None,
) -> list[str]:
    """Start one `search worker` process per slot and call `poll` while they run. A worker that dies
    abnormally (a signal, a crash) is reported and, while `remaining({pid: trials} of the live workers)`
    says trials are left, replaced by a new worker on its slot, which first recovers the dead worker's
    trial. Returns the reports."""
    fleet = _Fleet(name, slots, storage_url)
    for index, (slot, share) in enumerate(zip(slots, split_trials(n_trials, len(slots)), strict=False), 1):
        fleet.start(index, slot, share)
    try:
        while fleet.running():
            fleet.replace_dead(remaining)
            if poll is not None:
                poll()
            time.sleep(poll_every_s)
    except KeyboardInterrupt:
        fleet.stop()
        raise
    fleet.note_last_deaths()
    if poll is not None:
        poll()
    return fleet.deaths
