"""Every command the README and docs/ show still parses: run offline as far as it can run without data.

``otcls fit|test|predict`` lines parse their configs with ``--print_config``; ``otcls sweep`` lines run with
``--dry-run``; ``otcls check-data`` runs (the data may be absent: then one message and exit 2); the other
``otcls`` sub-commands and the ``python`` scripts must accept every flag the line passes (their ``--help``);
``make`` lines run with ``DRY_RUN=1`` as written and the rest under ``make -n``. Lines with placeholders
(``...``, ``<id>``) are skipped.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def doc_commands() -> list:
    """``(file, words, environment)`` of each shell line in a fenced block of README.md and docs/*.md."""
    out = []
    for path in ["README.md"] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))):
        text = open(os.path.join(REPO, path)).read()
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip()
                if not re.match(r"([A-Z_]+=\S+ )*(otcls|make|python) ", line):
                    continue
                words = shlex.split(line, comments=True)
                env = {}
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value make ...: kept for the run
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                if "..." not in line and "<" not in line.split("#")[0]:
                    out.append((os.path.relpath(os.path.join(REPO, path), REPO), words, env))
    return out


COMMANDS = doc_commands()


def run(argv, extra_env=None, timeout=600):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def flags(words) -> list:
    return sorted({w.split("=")[0] for w in words if w.startswith("--")})


@pytest.mark.parametrize("doc,words,env", COMMANDS, ids=[f"{d}:{' '.join(w)[:70]}" for d, w, _ in COMMANDS])
def test_doc_command_parses(doc, words, env):
    env = {k: v for k, v in env.items() if k != "WANDB_MODE"}  # never online from a test
    cli = [sys.executable, "-m", "otcls.cli"]
    if words[0] == "make":
        dry = any(w.startswith("DRY_RUN=") for w in words)
        if words[1:2] in (["demo"], ["test"]) or not dry:
            proc = run(["make", "-n"] + words[1:], env)
        else:
            proc = run(words, env)
        assert proc.returncode == 0, f"{doc}: {' '.join(words)}\n{proc.stderr[-2000:]}"
        return
    if words[0] == "python":
        proc = run([sys.executable, words[1], "--help"], env)
        assert proc.returncode == 0, f"{doc}: {' '.join(words)}\n{proc.stderr[-2000:]}"
        missing = [f for f in flags(words[2:]) if f not in proc.stdout]
        assert not missing, f"{doc}: {words[1]} has no {missing}"
        return
    sub = words[1]
    if sub in ("fit", "test", "predict", "validate"):
        proc = run(cli + words[1:] + ["--print_config"], env)
        assert proc.returncode == 0, f"{doc}: {' '.join(words)}\n{proc.stderr[-2000:]}"
        assert "model:" in proc.stdout
    elif sub == "sweep":
        cut = words.index("--") if "--" in words else len(words)  # after "--" come the runs' own overrides
        proc = run(cli + words[1:cut] + ["--dry-run"] + words[cut:], env)
        assert proc.returncode == 0 and "dry run:" in proc.stdout, f"{doc}: {' '.join(words)}\n{proc.stderr[-2000:]}"
    elif sub == "check-data":
        proc = run(cli + words[1:] + ["--no-download"], env)
        assert proc.returncode in (0, 2), proc.stderr[-2000:]
        assert proc.returncode == 0 or ("otcls check-data:" in proc.stderr and "Traceback" not in proc.stderr)
    else:
        proc = run(cli + [sub, "--help"], env)
        assert proc.returncode == 0, f"{doc}: otcls {sub} --help\n{proc.stderr[-2000:]}"
        missing = [f for f in flags(words[2:]) if f not in proc.stdout]
        assert not missing, f"{doc}: otcls {sub} has no {missing}"


def test_the_doc_commands_were_found():
    kinds = {w[0] if w[0] != "otcls" else f"otcls {w[1]}" for _, w, _ in COMMANDS}
    assert {"make", "otcls fit", "otcls test", "otcls sweep", "otcls check-data"} <= kinds
