"""``otcls`` command line.

``otcls fit|validate|test|predict --config cfg.yaml`` go to LightningCLI (see
:mod:`otcls.lightning_cli`); the other sub-commands are small tools, each in its own module
and imported only when used, so ``otcls cluster`` does not pay for Lightning's import.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, List, Optional

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

# name -> ("module:function", one-line help). Each function takes argv (list of str).
TOOL_COMMANDS: Dict[str, tuple] = {
    "report": ("otcls.reporting.report:main", "build comparison tables and plots from finished runs"),
    "sweep": ("otcls.sweeps.cli:main", "run method configs × seeds here, on GPU slots or on SLURM"),
    "cluster": ("otcls.cluster.cli:main", "size-bounded DB-OT clustering of a data file"),
    "check-data": ("otcls.data.check:main", "check a benchmark's data before running it"),
    "make-molecules": ("otcls.data.molecule_convert:main", "write a SMILES set in OGB's on-disk layout"),
    "make-lvis-demo": ("otcls.data.lvis_synth:main", "write the offline long-tailed LVIS-format set"),
}


def _load(target: str) -> Callable[[List[str]], Optional[int]]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _usage() -> str:
    lines = ["usage: otcls <command> [options]", "", "commands:"]
    lines += [f"  {c:<15} Lightning: {c} a model from a config (--config FILE)" for c in LIGHTNING_COMMANDS]
    lines += [f"  {c:<15} {h}" for c, (_, h) in TOOL_COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> Optional[int]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        return _load("otcls.lightning_cli:run")(argv)
    if command in TOOL_COMMANDS:
        return _load(TOOL_COMMANDS[command][0])(rest)
    print(f"otcls: unknown command '{command}'\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
