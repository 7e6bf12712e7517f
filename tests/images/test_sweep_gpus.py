"""GPU-aware sweeps without a GPU: slot assignment in --dry-run, and real subprocesses holding their slot."""
from __future__ import annotations

import os
import re
import sys
import threading

import pytest

from otcls.sweeps import cli as sweep
from otcls.sweeps.local import DeviceSlots, Processes

def _hold(cmd, folder, slots):
    """One process holding a free slot of ``slots`` while it runs (output in ``folder/output.log``)."""
    os.makedirs(folder, exist_ok=True)
    with slots.acquire() as env:
        Processes().call(cmd, {**os.environ, **env}, os.path.join(folder, "output.log"))


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = [f"{REPO}/configs/cifar10_lt/{m}.yaml" for m in ("ce", "focal", "balanced_softmax")]


def _dry(capsys, *extra):
    rc = sweep.main(["--base", f"{REPO}/configs/base/cifar.yaml", f"{REPO}/configs/cifar10_lt/data.yaml",
                     "--methods", *METHODS, "--seeds", "0", "1", "2", "--out", "/tmp/unused", "--dry-run", *extra])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("dry run: 9 runs") and "nothing was run" in lines[-1]
    return lines[:-1]


def test_dry_run_four_gpus_nine_jobs(capsys, tmp_path):
    lines = _dry(capsys, "--gpus", "0,1,2,3")
    assert len(lines) == 9
    devices = [re.search(r"CUDA_VISIBLE_DEVICES=(\S+) ", line).group(1) for line in lines]
    assert devices == ["0", "1", "2", "3", "0", "1", "2", "3", "0"]
    assert all("--trainer.devices 1" in line and "--trainer.accelerator gpu" in line for line in lines)
    assert not os.path.exists("/tmp/unused/runs")  # nothing ran


def test_dry_run_two_gpus_per_run(capsys):
    lines = _dry(capsys, "--gpus", "0,1,2,3", "--gpus-per-run", "2")
    devices = [re.search(r"CUDA_VISIBLE_DEVICES=(\S+) ", line).group(1) for line in lines]
    assert devices == ["0,1", "2,3"] * 4 + ["0,1"]
    assert all("--trainer.devices 2" in line and "--trainer.strategy ddp" in line for line in lines)
    with pytest.raises(ValueError, match="multiple of --gpus-per-run"):
        DeviceSlots("0,1,2", 2)


def test_runs_hold_their_own_slot(tmp_path):
    """Six real subprocesses on 2 slots: each sees its slot's CUDA_VISIBLE_DEVICES, never two at once on one slot."""
    slots = DeviceSlots("5,7", 1)
    probe = ("import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], time.time()); time.sleep(0.3); "
             "print(time.time())")
    threads = [threading.Thread(target=_hold, args=([sys.executable, "-c", probe], str(tmp_path / f"r{i}"), slots)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = {}
    for i in range(6):
        first, end = open(tmp_path / f"r{i}" / "output.log").read().split("\n")[:2]
        device, begin = first.split()
        spans.setdefault(device, []).append((float(begin), float(end)))
    assert set(spans) == {"5", "7"}
    for runs in spans.values():
        runs.sort()
        assert all(a_end <= b_begin for (_, a_end), (b_begin, _) in zip(runs, runs[1:]))


def test_dry_run_two_runs_per_gpu(capsys):
    lines = _dry(capsys, "--gpus", "0,1", "--runs-per-gpu", "2")
    devices = [re.search(r"CUDA_VISIBLE_DEVICES=(\S+) ", line).group(1) for line in lines]
    assert devices == ["0", "1"] * 4 + ["0"]
    with pytest.raises(ValueError, match="--runs-per-gpu needs --gpus"):
        sweep.main(["--methods", METHODS[0], "--out", "/tmp/unused", "--runs-per-gpu", "2", "--dry-run"])
    with pytest.raises(ValueError, match="lists a GPU twice"):
        DeviceSlots("0,0", 1)
    with pytest.raises(ValueError, match="--runs-per-gpu must be >= 1"):
        DeviceSlots("0", 1, 0)


def test_k_runs_share_a_gpu_at_once_and_never_more(tmp_path):
    """Eight real subprocesses on 2 GPUs x 3 runs each: at most 3 at a time on a GPU, and 3 do overlap."""
    slots = DeviceSlots("2,3", 1, runs_per_gpu=3)
    assert len(slots.groups) == 6
    probe = ("import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], time.time()); time.sleep(1.0); "
             "print(time.time())")
    threads = [threading.Thread(target=_hold, args=([sys.executable, "-c", probe], str(tmp_path / f"r{i}"), slots)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = {}
    for i in range(12):
        first, end = open(tmp_path / f"r{i}" / "output.log").read().split("\n")[:2]
        device, begin = first.split()
        spans.setdefault(device, []).append((float(begin), float(end)))
    assert set(spans) == {"2", "3"}
    for runs in spans.values():
        events = sorted([(b, 1) for b, _ in runs] + [(e, -1) for _, e in runs], key=lambda t: (t[0], t[1]))
        depth, peak = 0, 0
        for _, step in events:
            depth += step
            peak = max(peak, depth)
        assert peak == 3


def test_method_overrides_follow_their_method(capsys, tmp_path):
    (tmp_path / "ce.yaml").write_text("trainer:\n  max_epochs: 3\n")
    lines = _dry(capsys, "--method-overrides", str(tmp_path))
    ce = [line for line in lines if line.startswith("ce/")]
    focal = [line for line in lines if line.startswith("focal/")]
    assert all(f"--config {METHODS[0]} --config {tmp_path}/ce.yaml" in line for line in ce)
    assert all(str(tmp_path) not in line for line in focal)
    with pytest.raises(ValueError, match="is not a folder"):
        _dry(capsys, "--method-overrides", str(tmp_path / "missing"))
