"""Running a sweep's runs on this machine: ``--jobs`` processes at a time, or one per free GPU slot, each run a
process group of its own that Ctrl-C or SIGTERM stops with the sweep (a relaunch then resumes it)."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from otcls.sweeps.plan import Run, SweepSettings, prepare, selected_checkpoint


class DeviceSlots:
    """GPU groups of ``per_run`` ids, each offered ``runs_per_gpu`` times: a slot is handed to one run at a
    time and a run waits until a slot is free, so every group runs up to ``runs_per_gpu`` runs at once (small
    models leave most of a GPU idle). Slots alternate over the groups (0, 1, 0, 1 for two GPUs and two runs
    each), so the first runs spread over every GPU."""

    def __init__(self, gpus: str, per_run: int, runs_per_gpu: int = 1) -> None:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not ids or per_run < 1 or len(ids) % per_run:
            raise ValueError(f"--gpus {gpus!r} must list GPU ids whose number is a multiple of --gpus-per-run "
                             f"({per_run}), e.g. --gpus 0,1,2,3 --gpus-per-run 2")
        if len(set(ids)) != len(ids):
            raise ValueError(f"--gpus {gpus!r} lists a GPU twice; use --runs-per-gpu to share a GPU between runs")
        if runs_per_gpu < 1:
            raise ValueError(f"--runs-per-gpu must be >= 1, got {runs_per_gpu}")
        self.per_run = per_run
        groups = [ids[i:i + per_run] for i in range(0, len(ids), per_run)]
        self.groups = [g for _ in range(runs_per_gpu) for g in groups]
        self._free: "queue.Queue[List[str]]" = queue.Queue()
        for group in self.groups:
            self._free.put(group)

    def trainer_args(self) -> List[str]:
        args = ["--trainer.accelerator", "gpu", "--trainer.devices", str(self.per_run)]
        return args + (["--trainer.strategy", "ddp"] if self.per_run > 1 else [])

    @contextmanager
    def acquire(self) -> Iterator[Dict[str, str]]:
        """The environment of a run holding the next free group (blocks until one is free)."""
        group = self._free.get()
        try:
            yield {"CUDA_VISIBLE_DEVICES": ",".join(group)}
        finally:
            self._free.put(group)


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the sweep; its runs were stopped too (a relaunch resumes them)."""


class Processes:
    """The sweep's live run processes. Each run starts in a session of its own, so a Ctrl-C in the terminal
    reaches the sweep only; :meth:`stop` then sends SIGTERM to every run's process group (the run and its
    DataLoader workers and DDP ranks), waits ``grace`` seconds, and kills what is left."""

    def __init__(self) -> None:
        self._live: Dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.stopping = False

    def call(self, cmd: List[str], env: Dict[str, str], log: Optional[str]) -> int:
        with self._lock:
            if self.stopping:
                return -signal.SIGTERM
            out = open(log, "w") if log else None
            try:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                        start_new_session=True)
            finally:
                if out:
                    out.close()
            self._live[proc.pid] = proc
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._live.pop(proc.pid, None)

    def stop(self, grace: float = 30.0) -> None:
        with self._lock:
            self.stopping = True
            procs = list(self._live.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.time() + grace
            while any(p.poll() is None for p in procs) and time.time() < deadline:
                time.sleep(0.1)
            if all(p.poll() is not None for p in procs):
                return


def execute(settings: SweepSettings, run: Run, *, stream: bool = False,
            env: Optional[Dict[str, str]] = None, processes: Optional[Processes] = None) -> Tuple[int, float, str]:
    """Run ``run`` now: reuse it when finished, resume it from its own ``last.ckpt``, or start it, with its
    parent's selected checkpoint; ``(exit status, seconds, state)``. The state is decided here, when the run
    starts, so a SLURM task requeued after a timeout resumes too."""
    state = prepare(run)
    if state == "reuse":
        return 0, 0.0, state
    parent = selected_checkpoint(run.parent_folder) if run.parent_folder else None
    os.makedirs(run.folder, exist_ok=True)
    start = time.time()
    cmd = settings.command(run, parent, resume=state == "resume")
    log = None if stream else os.path.join(run.folder, "output.log" if state == "fresh" else "output.resumed.log")
    rc = (processes or Processes()).call(cmd, {**os.environ, **(env or {})}, log)
    return rc, time.time() - start, state


def run_here(settings: SweepSettings, runs: List[Run], *, workers: int, slots: Optional[DeviceSlots],
             on_done: Callable[[Run, Optional[int], float, str], bool], progress=None) -> None:
    """Run ``runs`` here, ``workers`` at a time. A run that depends on another is handed out once that one
    succeeded (``on_done`` returns True) and goes first, so the sweep keeps its seed-major order; ``on_done``
    books every run. Ctrl-C / SIGTERM stops every run and raises :class:`SweepInterrupted`."""
    processes = Processes()
    children: Dict[str, List[Run]] = {}
    for run in runs:
        if run.parent_folder:
            children.setdefault(run.parent_key, []).append(run)
    stream = workers == 1

    def one(run: Run) -> Tuple[int, float, str]:
        if slots is None:
            return execute(settings, run, stream=stream, processes=processes)
        with slots.acquire() as env:
            return execute(settings, run, stream=stream, env=env, processes=processes)

    interrupted: List[int] = []

    def handler(signum, frame):
        interrupted.append(signum)
        threading.Thread(target=processes.stop, daemon=True).start()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {}
            pending = deque(r for r in runs if not r.parent_folder)
            while pending or futures:
                while pending and len(futures) < workers and not interrupted:
                    run = pending.popleft()
                    futures[pool.submit(one, run)] = run
                if not futures:
                    break
                fut = next(as_completed(futures))
                run = futures.pop(fut)
                rc, secs, state = fut.result()
                waiting = children.get(run.key, [])
                if interrupted:
                    continue
                ok = on_done(run, rc, secs, state)
                if ok:
                    pending.extendleft(reversed(waiting))
                else:
                    for child in waiting:
                        on_done(child, None, 0.0, "skipped")
                if progress is not None:
                    progress.set_postfix_str(f"{run.key} {secs:.0f}s")
                    progress.update(1 + (0 if ok else len(waiting)))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if interrupted:
        raise SweepInterrupted(f"stopped by signal {signal.Signals(interrupted[0]).name}")
