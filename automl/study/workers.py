"""Several worker processes on one machine, one study: ``automl search --workers N`` (and
``automl run --workers N``, whose workers also keep to its budget split).

Each worker is an ``automl worker`` process. With GPUs, worker i sees GPU i mod n_gpus
(``--trials-per-gpu K`` packs K workers on each); on CPU the cores are split between workers.
The supervisor shows the study's progress by reading the storage, and passes SIGINT/SIGTERM on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


def worker_count(workers: int | None, trials_per_gpu: int | None) -> int:
    """``--workers N``, or ``--trials-per-gpu K`` times the GPUs this machine has; 1 otherwise (and
    for ``--trials-per-gpu`` on a machine without GPUs)."""
    if workers:
        return workers
    return (trials_per_gpu or 0) * torch.cuda.device_count() or 1


def worker_commands(study_path: str, n_workers: int, *, extra_args: list[str]) -> list[tuple[list[str], dict]]:
    n_gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    out = []
    for i in range(n_workers):
        env = dict(os.environ)
        if n_gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpus)
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "automl", "worker", study_path, "--worker-index", str(i),
               "--threads", str(threads), *extra_args]
        out.append((cmd, env))
    return out


class WorkerPool:
    def __init__(self, commands: list[tuple[list[str], dict]], log_dir: Path):
        self.commands, self.log_dir = commands, log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, (cmd, env) in enumerate(self.commands):
            log = open(self.log_dir / f"worker{i}.log", "ab")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(0.5)  # stagger start-up so workers do not all hit the storage at once

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()

    def exit_codes(self) -> list[int | None]:
        return [p.poll() for p in self.procs]


def follow_pool(view, pool: WorkerPool, sf, storage_url: str) -> None:
    """Start the pool and follow the study (or each stage) through the storage until every worker
    has exited; stops the workers if this process is interrupted."""
    import optuna
    from optuna.trial import TrialState

    from automl.study.stages import search_study_names
    from automl.study.storage import open_storage

    storage = open_storage(storage_url, sf.storage)
    names = search_study_names(sf)
    targets = [st.n_trials for st in sf.stages] if sf.stages else [sf.budget.n_trials]
    pool.start()
    seen: set[tuple[str, int]] = set()
    current = names[0]
    try:
        while True:
            alive = pool.running()
            existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
            for name, target in zip(names, targets):
                if name not in existing:
                    continue
                study = optuna.load_study(study_name=name, storage=storage)
                if name != current:
                    current = name
                    view.follow(study, target)
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                   TrialState.FAIL)):
                    if (name, t.number) not in seen:
                        seen.add((name, t.number))
                        view(study, t)
            if not alive:
                break
            time.sleep(2.0)
    finally:
        pool.stop()
    bad = [c for c in pool.exit_codes() if c not in (0, None)]
    if bad:
        view.console.print(f"[yellow]{len(bad)} worker(s) exited with an error; see {pool.log_dir.name}/ in the "
                           "study's run folder")
