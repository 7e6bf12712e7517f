"""A sweep's plan: one run per (method config, seed), each with its own folder, its ``otcls fit`` command and the
run it starts from (a fine-tuning or a teacher), and what a relaunch does with a run it finds on disk."""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# How a run uses the checkpoint of the run it depends on: the ``otcls fit`` option that receives it.
DEPENDENCY_FLAGS = {"finetune": "--model.init_args.init_checkpoint", "teacher": "--model.init_args.teacher_checkpoint"}


@dataclass(frozen=True)
class Dependency:
    parent: str  # the method whose run of the same seed must finish first
    kind: str  # a key of DEPENDENCY_FLAGS

    @property
    def flag(self) -> str:
        return DEPENDENCY_FLAGS[self.kind]


@dataclass(frozen=True)
class Run:
    name: str
    seed: int
    folder: str
    parent_folder: Optional[str] = None
    parent_flag: Optional[str] = None
    parent_key: Optional[str] = None  # the parent run's key (``ce/seed0``)

    @property
    def key(self) -> str:
        return f"{self.name}/seed{self.seed}"


@dataclass
class SweepSettings:
    """Everything a sweep needs to build and rebuild its runs (picklable: SLURM tasks carry it)."""

    base: List[str]
    methods: Dict[str, List[str]]  # method name → its config files (the method config, then an override)
    seeds: List[int]
    out: str
    extra: List[str] = field(default_factory=list)  # overrides given to every run
    data_seed: bool = True
    depends: Dict[str, Dependency] = field(default_factory=dict)

    def folder(self, name: str, seed: int) -> str:
        return os.path.join(self.out, "runs", name, f"seed{seed}")

    def runs(self) -> List[Run]:
        """Seed-major order: an interrupted sweep has compared every method on its first seeds."""
        out = []
        for seed in self.seeds:
            for name in self.methods:
                dep = self.depends.get(name)
                out.append(Run(name, seed, self.folder(name, seed),
                               self.folder(dep.parent, seed) if dep else None, dep.flag if dep else None,
                               f"{dep.parent}/seed{seed}" if dep else None))
        return out

    def command(self, run: Run, parent_checkpoint: Optional[str] = None, resume: bool = False) -> List[str]:
        """``otcls fit`` of one run: the base configs, the method's config files, the sweep's overrides, then
        the parent's checkpoint and ``--ckpt_path last`` when the run continues its own last checkpoint."""
        cmd = [sys.executable, "-m", "otcls.cli", "fit"]
        for cfg in [*self.base, *self.methods[run.name]]:
            cmd += ["--config", cfg]
        cmd += ["--seed_everything", str(run.seed), "--trainer.default_root_dir", run.folder, "--test_after_fit", "true"]
        if self.data_seed:
            cmd += ["--data.init_args.seed", str(run.seed)]
        cmd += self.extra
        if parent_checkpoint:
            cmd += [run.parent_flag, parent_checkpoint]
        if resume:
            cmd += ["--ckpt_path", "last"]
        return cmd


def parse_dependencies(pairs: Dict[str, List[str]], names: List[str]) -> Dict[str, Dependency]:
    """``{"finetune": ["dbot=ce"], "teacher": ["reot_teacher=ce"]}`` → ``{child: Dependency}``; both ends must be
    methods of the sweep, a run has at most one parent, and a parent is not itself a child."""
    out: Dict[str, Dependency] = {}
    for kind, items in pairs.items():
        for pair in items:
            child, sep, parent = pair.partition("=")
            if not sep or child not in names or parent not in names or child == parent:
                raise ValueError(f"--{kind} takes CHILD=PARENT with two different method names of this sweep "
                                 f"({', '.join(names)}); got '{pair}'")
            if child in out:
                raise ValueError(f"'{child}' is given two parent runs ({out[child].parent} and {parent}); a run "
                                 "starts from one checkpoint")
            out[child] = Dependency(parent, kind)
    if set(out) & {d.parent for d in out.values()}:
        raise ValueError(f"chains are not supported (a parent run is itself fine-tuned or taught): {pairs}")
    return out


def is_finished(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "test_results.json"))


def last_checkpoint(folder: str) -> Optional[str]:
    path = os.path.join(folder, "checkpoints", "last.ckpt")
    return path if os.path.isfile(path) else None


def selected_checkpoint(folder: str) -> str:
    """The checkpoint a finished run was tested with: its newest ``best-*.ckpt``, else ``last.ckpt``."""
    best = sorted(glob.glob(os.path.join(folder, "checkpoints", "best-*.ckpt")), key=os.path.getmtime)
    path = best[-1] if best else os.path.join(folder, "checkpoints", "last.ckpt")
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint in {folder}/checkpoints: the run did not finish")
    return path


def set_aside(folder: str) -> Optional[str]:
    """Move an earlier attempt's folder to ``<folder>.attempt-K`` (first free K), so a run that starts over
    gets a folder (and a W&B run id) of its own and nothing of the earlier attempt is lost."""
    if not os.path.exists(folder):
        return None
    k = 1
    while os.path.exists(f"{folder}.attempt-{k}"):
        k += 1
    os.rename(folder, f"{folder}.attempt-{k}")
    return f"{folder}.attempt-{k}"


def drop_checkpoints_after_last(folder: str) -> List[str]:
    """Remove ``best-*.ckpt`` files written after ``last.ckpt``: an epoch whose validation saved a best
    checkpoint but that crashed before ``last.ckpt``; the resumed run trains that epoch again, and a stale
    file would otherwise be taken as the run's selected checkpoint."""
    last = last_checkpoint(folder)
    if last is None:
        return []
    stale = [p for p in glob.glob(os.path.join(folder, "checkpoints", "best-*.ckpt"))
             if os.path.getmtime(p) > os.path.getmtime(last)]
    for path in stale:
        os.remove(path)
    return stale


def prepare(run: Run) -> str:
    """What to do with ``run`` now, after tidying its folder: ``"reuse"`` (finished), ``"resume"`` (continue
    its own ``last.ckpt``: same W&B run, λ(t), optimiser and scheduler state) or ``"fresh"`` (an earlier
    attempt without a checkpoint is set aside first)."""
    if is_finished(run.folder):
        return "reuse"
    if last_checkpoint(run.folder):
        drop_checkpoints_after_last(run.folder)
        return "resume"
    set_aside(run.folder)
    return "fresh"
