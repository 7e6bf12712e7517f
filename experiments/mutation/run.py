"""Mutation check: apply each one-line bug of tests/mutations.yaml to a scratch copy of the repository, run the
tests named for it there, and report which bugs the tests catch.

Each entry of the list: ``id``, ``file`` (relative to the repository root), ``original`` (a substring that occurs
exactly once in the file), ``replacement`` and ``tests`` (pytest node ids that must fail on the mutated code).
The scratch copy (src/, tests/, configs/ and the packaging files) lives in a temporary folder and is imported
through PYTHONPATH ahead of the editable install; a mutation of the fused loop's C source rebuilds the extension
in the scratch copy. The repository itself is never modified.

Usage: python experiments/mutation/run.py [--only ID ...] [--list tests/mutations.yaml] [--out results/mutation]
Exit status 1 when a mutation survives, or when the named tests fail on the unmutated copy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("src", "tests", "configs", "pyproject.toml", "setup.cfg", "setup.py")
NATIVE = "src/otcls/ot/native/"
EXTENSION = "src/otcls/ot/_fused_sinkhorn" + sysconfig.get_config_var("EXT_SUFFIX")


def problems(path: Path) -> tuple:
    """``(mutations, problems)`` of the list at ``path``: each problem a line saying what is wrong with an entry
    (a missing key, a duplicate id, an ``original`` that does not occur exactly once in its file)."""
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list) or not entries:
        return [], [f"{path}: expected a non-empty YAML list of mutations"]
    found, seen = [], set()
    for e in entries:
        missing = {"id", "file", "original", "replacement", "tests"} - set(e)
        if missing:
            found.append(f"mutation {e.get('id', e)} lacks {sorted(missing)}")
            continue
        if e["id"] in seen:
            found.append(f"duplicate mutation id {e['id']}")
        seen.add(e["id"])
        target = ROOT / e["file"]
        count = target.read_text().count(e["original"]) if target.is_file() else 0
        if count != 1:
            found.append(f"mutation {e['id']}: the original text occurs {count} times in {e['file']} (it must "
                         "occur exactly once; quote more of the line)")
        if e["original"] == e["replacement"] or not e["tests"]:
            found.append(f"mutation {e['id']} changes nothing or names no test")
    return entries, found


def load(path: Path) -> list:
    """The mutations of ``path``; ValueError listing every problem of the list."""
    entries, found = problems(path)
    if found:
        raise ValueError(f"{path}:\n" + "\n".join(found))
    return entries


def build_extension(scratch: Path) -> None:
    """Compile the fused loop into the scratch copy (the flags of setup.py)."""
    libs = ["-lmvec", "-lm"] if sys.platform.startswith("linux") and os.uname().machine == "x86_64" else ["-lm"]
    cmd = [sysconfig.get_config_var("CC").split()[0], "-O3", "-std=c11", "-fopenmp-simd", "-shared", "-fPIC",
           "-I" + sysconfig.get_paths()["include"], "-o", str(scratch / EXTENSION),
           str(scratch / NATIVE / "fused_sinkhorn.c"), *libs]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def run_tests(scratch: Path, tests: list, timeout: float) -> tuple:
    """``(passed, seconds, tail of the output)`` of the tests in the scratch copy."""
    env = dict(os.environ, PYTHONPATH=str(scratch / "src"), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
           *tests]
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.time() - start, "timed out"
    return proc.returncode == 0, time.time() - start, (proc.stdout + proc.stderr)[-2000:]


def check_import(scratch: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(scratch / "src"))
    out = subprocess.run([sys.executable, "-c", "import otcls.ot.fused as f, otcls; print(otcls.__file__); "
                          "print(f.available())"], cwd=scratch, env=env, capture_output=True, text=True, check=True)
    where, available = out.stdout.split()
    if not Path(where).resolve().is_relative_to(scratch.resolve()):
        raise RuntimeError(f"the scratch copy is not the one imported: otcls comes from {where}")
    if available != "True":
        raise RuntimeError("the fused extension does not load in the scratch copy")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", default=str(ROOT / "tests" / "mutations.yaml"))
    ap.add_argument("--out", default=str(ROOT / "results" / "mutation"))
    ap.add_argument("--only", nargs="*", help="mutation ids to run (default: all)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per test run")
    args = ap.parse_args(argv)
    entries = load(Path(args.list))
    if args.only:
        unknown = set(args.only) - {e["id"] for e in entries}
        if unknown:
            raise SystemExit(f"unknown mutation id(s): {sorted(unknown)}")
        entries = [e for e in entries if e["id"] in args.only]
    start = time.time()
    rows, failed = [], False
    with tempfile.TemporaryDirectory(prefix="otcls-mutation-") as tmp:
        scratch = Path(tmp) / "repo"
        scratch.mkdir()
        for name in COPIED:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(src, scratch / name)
        build_extension(scratch)
        check_import(scratch)
        all_tests = sorted({t for e in entries for t in e["tests"]})
        ok, secs, tail = run_tests(scratch, all_tests, timeout=4 * args.timeout)
        print(f"unmutated copy: {'pass' if ok else 'FAIL'} ({len(all_tests)} test ids, {secs:.0f} s)", flush=True)
        if not ok:
            print(tail)
            return 1
        for e in entries:
            target = scratch / e["file"]
            pristine = target.read_text()
            target.write_text(pristine.replace(e["original"], e["replacement"], 1))
            native = e["file"].startswith(NATIVE)
            try:
                if native:
                    build_extension(scratch)
                passed, secs, tail = run_tests(scratch, e["tests"], args.timeout)
            except subprocess.CalledProcessError as exc:  # a mutation that does not compile counts as caught
                passed, secs, tail = False, 0.0, exc.stderr[-2000:]
            finally:
                target.write_text(pristine)
                if native:
                    build_extension(scratch)
            status = "survived" if passed else "caught"
            failed |= passed
            rows.append((e["id"], e["file"], e["original"].strip(), e["replacement"].strip(), e["tests"], status, secs))
            print(f"{status:8s} {e['id']} ({secs:.0f} s)", flush=True)
    total = time.time() - start
    caught = sum(r[5] == "caught" for r in rows)

    def code(s):
        return "`" + s.replace("|", "\\|").replace("`", "'") + "`"

    lines = [f"# Mutation check: {caught} of {len(rows)} caught ({total:.0f} s)\n",
             "| mutation | file | original | replacement | caught by | result |", "|---|---|---|---|---|---|"]
    for mid, file, orig, repl, tests, status, _ in rows:
        lines.append(f"| {mid} | {file} | {code(orig)} | {code(repl)} | {'<br>'.join(tests)} | {status} |")
    report = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
