"""Optional areas of otcls and the pip extra that installs each one.

The core (``otcls.ot``, losses, heads, inference, the Lightning tasks and the CLI) needs only what
``pip install otcls`` brings. An area module calls ``require("mol")`` before importing its third-party
packages, so a missing one surfaces as an ``ImportError`` that names the command to run instead of a bare
``ModuleNotFoundError`` from deep inside.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, Tuple

# extra -> (what it is for, top-level modules it provides). Keep in step with setup.cfg's extras_require.
EXTRAS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "mol": ("OGB molecule benchmarks", ("rdkit", "datamol", "torch_geometric", "ogb", "pandas", "sklearn")),
    "lvis": ("LVIS long-tailed instance segmentation", ("lvis", "pycocotools", "contourpy")),
    "cluster": ("size-bounded DB-OT clustering", ("sklearn", "ortools", "matplotlib")),
    "slurm": ("sweeps submitted to SLURM", ("submitit",)),
    "wandb": ("Weights & Biases logging", ("wandb",)),
    "plots": ("report and sweep figures", ("matplotlib",)),
}


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown otcls extra '{extra}'; choose one of: {', '.join(sorted(EXTRAS))}")
    return f"pip install 'otcls[{extra}]'"


def require(extra: str, *modules: str) -> None:
    """Raise an ``ImportError`` naming ``pip install 'otcls[extra]'`` when one of ``modules`` (default: all
    of the extra's) is not installed. Only looks the packages up (``importlib.util.find_spec``), so an area
    module can call it first thing without paying for the imports."""
    hint = install_hint(extra)
    purpose, provided = EXTRAS[extra]
    unknown = [m for m in modules if m not in provided]
    if unknown:
        raise ValueError(f"{unknown} are not packages of the '{extra}' extra ({', '.join(provided)})")
    missing = [m for m in (modules or provided) if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"otcls's {purpose} need {', '.join(missing)}, not installed here: {hint}",
                          name=missing[0])
