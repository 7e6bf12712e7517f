"""``otcls sweep --slurm`` without a cluster: the sbatch files submitit writes (parameters from the options, the
afterok dependency of each fine-tuning / teacher job on its own seed's CE job, the summary job after all of them)
captured by stand-in ``sbatch`` / ``squeue`` commands, a relaunch that leaves running jobs alone, and the dry run."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

pytest.importorskip("submitit")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = [f"{REPO}/configs/cifar10_lt/{m}.yaml" for m in ("ce", "reot_teacher", "dbot")]
OPTIONS = ["--slurm-partition", "gpu", "--slurm-account", "lab42", "--slurm-qos", "high", "--slurm-time", "600",
           "--slurm-mem", "32", "--slurm-gpus-per-task", "2", "--slurm-cpus-per-task", "6",
           "--sbatch", "constraint=a100", "exclude=node3"]


def _fake_slurm(bin_dir, record_dir):
    """``sbatch`` that keeps each submitted file and answers job ids 100, 101, ...; ``squeue`` that prints
    ``$RECORD/squeue.txt``; ``srun`` so that submitit believes it is on a cluster."""
    bin_dir.mkdir()
    record_dir.mkdir()
    scripts = {
        "sbatch": f"""#!/bin/sh
n=$(ls {record_dir} | grep -c '^job') ; id=$((100 + n))
cp "$1" {record_dir}/job$id.sh
echo "Submitted batch job $id"
""",
        "squeue": f"#!/bin/sh\ncat {record_dir}/squeue.txt 2>/dev/null\n",
        "srun": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _sweep(out, env, *extra):
    return subprocess.run([sys.executable, "-m", "otcls.cli", "sweep", "--base", f"{REPO}/configs/base/cifar.yaml",
                           f"{REPO}/configs/cifar10_lt/data.yaml", "--methods", *METHODS, "--finetune", "dbot=ce",
                           "--teacher", "reot_teacher=ce", "--seeds", "0", "1", "--out", str(out), "--slurm",
                           *OPTIONS, *extra], cwd=REPO, capture_output=True, text=True, timeout=180, env=env)


def _jobs(record_dir):
    out = {}
    for f in sorted(os.listdir(record_dir)):
        if f.startswith("job"):
            out[int(f[3:-3])] = (record_dir / f).read_text()
    return out


def _flags(text):
    return dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", text, re.M))


def test_jobs_dependencies_and_parameters_are_what_the_options_say(tmp_path):
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    _fake_slurm(bin_dir, record)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = tmp_path / "sweep"
    proc = _sweep(out, env)
    assert proc.returncode == 0, proc.stderr
    jobs = _jobs(record)
    # one array (CE of seeds 0 and 1), four dependants, the summary: submitted at once, nothing waited for
    assert sorted(jobs) == [100, 101, 102, 103, 104, 105]
    array = _flags(jobs[100])
    assert array["array"] == "0-1%2"
    for flags in map(_flags, (jobs[i] for i in range(100, 105))):
        assert (flags["partition"], flags["account"], flags["qos"], flags["time"], flags["mem"]) == \
               ("gpu", "lab42", "high", "600", "32GB")
        assert (flags["gpus-per-node"], flags["cpus-per-task"], flags["constraint"], flags["exclude"]) == \
               ("2", "6", "a100", "node3")
    assert "dependency" not in array
    # the dependants in submission order: seed-major, so reot_teacher/seed0, dbot/seed0, reot_teacher/seed1, ...;
    # each waits on the CE task of its own seed (array task 100_0 for seed 0, 100_1 for seed 1)
    import json

    ids = json.load(open(out / "slurm" / "jobs.json"))
    assert ids["ce/seed0"] == "100_0" and ids["ce/seed1"] == "100_1"
    for key in ("reot_teacher/seed0", "dbot/seed0", "reot_teacher/seed1", "dbot/seed1"):
        flags = _flags(jobs[int(ids[key])])
        assert flags["dependency"] == f"afterok:100_{key[-1]}", key
        assert flags["kill-on-invalid-dep"] == "yes"
    summary = _flags(jobs[int(ids["summary"])])
    assert summary["dependency"] == "afterany:" + ":".join(sorted(v for k, v in ids.items() if k != "summary"))
    assert "gpus-per-node" not in summary
    assert "jobs.json" in proc.stdout

    # relaunch while ce/seed1 and dbot/seed1 are still queued or running: those are not submitted again,
    # the others are (nothing finished), and the new reot_teacher/seed1 waits on the running CE task
    (record / "squeue.txt").write_text(f"100_1 RUNNING\n{ids['dbot/seed1']} PENDING\n")
    proc = _sweep(out, env)
    assert proc.returncode == 0, proc.stderr
    again = json.load(open(out / "slurm" / "jobs.json"))
    assert again["ce/seed1"] == "100_1" and again["dbot/seed1"] == ids["dbot/seed1"]
    assert again["ce/seed0"] != ids["ce/seed0"]
    assert _flags(_jobs(record)[int(again["reot_teacher/seed1"])])["dependency"] == "afterok:100_1"
    assert _flags(_jobs(record)[int(again["reot_teacher/seed0"])])["dependency"] == f"afterok:{again['ce/seed0']}"


def test_slurm_dry_run_prints_parameters_and_graph(tmp_path):
    proc = _sweep(tmp_path / "sweep", {**os.environ, "OMP_NUM_THREADS": "1"}, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for flag in ("--partition=gpu", "--account=lab42", "--qos=high", "--time=600", "--mem=32GB",
                 "--gpus-per-node=2", "--constraint=a100", "--exclude=node3"):
        assert f"#SBATCH {flag}" in text, flag
    assert "array [ce/seed0, ce/seed1] ← nothing" in text
    for seed in (0, 1):
        assert f"reot_teacher/seed{seed} ← afterok ce/seed{seed}" in text
        assert f"dbot/seed{seed} ← afterok ce/seed{seed}" in text
        teacher = next(line for line in text.splitlines() if line.startswith(f"reot_teacher/seed{seed}:"))
        assert f"--model.init_args.teacher_checkpoint '{tmp_path}/sweep/runs/ce/seed{seed}/checkpoints/best-*.ckpt'" \
            in teacher
    assert "summary ← afterany" in text
    assert not (tmp_path / "sweep").exists()


def test_bad_slurm_options_stop_before_submitting(tmp_path):
    proc = _sweep(tmp_path / "sweep", {**os.environ, "OMP_NUM_THREADS": "1"}, "--slurm-time", "0")
    assert proc.returncode != 0 and "--slurm-time must be an integer >= 1" in proc.stderr
    proc = _sweep(tmp_path / "sweep", {**os.environ, "OMP_NUM_THREADS": "1"}, "--sbatch", "nodash")
    assert proc.returncode != 0 and "--sbatch takes KEY=VALUE" in proc.stderr
    assert not (tmp_path / "sweep").exists()
