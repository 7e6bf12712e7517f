"""The package as a user gets it: sdist -> wheel -> a fresh virtual environment outside the repository.

One module-scoped build and install (a few minutes: torch comes from the machine's local package index at the
version pinned in constraints.txt), then each test runs the installed ``otcls`` from a folder outside the
repository, so nothing here can import the source tree. ``-m "not packaging"`` deselects the module.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Top-level modules of the optional areas that a core install must not bring in.
NOT_IN_CORE = ("rdkit", "datamol", "torch_geometric", "ogb", "lvis", "pycocotools", "ortools",
               "k_means_constrained", "submitit", "wandb", "tensorboard", "matplotlib", "pandas", "sklearn")
# What the tree copy for the build leaves out: at the top, VCS data, the environment and run outputs; anywhere,
# build products and caches.
TOP_IGNORE = {".git", ".venv", "runs", "results", "data", "wandb", "lightning_logs", "build", "dist"}
ANY_IGNORE = shutil.ignore_patterns("*.egg-info", "__pycache__", "*.so", ".pytest_cache", ".hypothesis")


def _copy_ignore(folder: str, names):
    ignored = set(ANY_IGNORE(folder, names))
    return ignored | (TOP_IGNORE & set(names) if Path(folder) == REPO else set())


def _clean_env(**extra: str) -> dict:
    """The machine's environment (pip's index settings included) without anything that points into the repo, and
    without W&B settings (other test modules set WANDB_MODE for the whole session)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("WANDB_")}
    env.update(OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1", **extra)
    return env


def _run(cmd, cwd, timeout=900, check=True, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def _compiler_present() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


@pytest.fixture(scope="module")
def core():
    """Build the sdist from a copy of the tree, the wheel from the unpacked sdist, and install the wheel
    (core only, no extras) into a fresh venv. Yields paths; removes everything afterwards unless
    ``OTCLS_PACKAGING_KEEP=1`` (to inspect or measure the environment)."""
    if importlib_missing("setuptools"):
        pytest.skip("setuptools is not installed in this environment (pip install 'otcls[test]')")
    # Its own folder, not pytest's tmp_path: pytest prunes old session folders, which another pytest run on a
    # shared machine may do while this one installs.
    root = Path(tempfile.mkdtemp(prefix="otcls-packaging-"))
    try:
        yield from _build_and_install(root)
    finally:
        if os.environ.get("OTCLS_PACKAGING_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


def _build_and_install(root: Path):
    tree, dist, out = root / "tree", root / "dist", root / "outside"
    shutil.copytree(REPO, tree, ignore=_copy_ignore)
    dist.mkdir()
    out.mkdir()
    timings = {}

    t0 = time.perf_counter()
    sdist_name = _run([sys.executable, "-c", f"from setuptools import build_meta as b; "
                       f"print(b.build_sdist({str(dist)!r}))"], cwd=tree).stdout.strip().splitlines()[-1]
    sdist = dist / sdist_name
    with tarfile.open(sdist) as tar:
        tar.extractall(root / "sdist", filter="data")
    unpacked = root / "sdist" / sdist_name[: -len(".tar.gz")]
    wheel_name = _run([sys.executable, "-c", f"from setuptools import build_meta as b; "
                       f"print(b.build_wheel({str(dist)!r}))"], cwd=unpacked).stdout.strip().splitlines()[-1]
    timings["build_s"] = time.perf_counter() - t0

    venv = root / "venv"
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "venv", venv], cwd=out)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", dist / wheel_name], cwd=out,
         timeout=1200)
    timings["install_s"] = time.perf_counter() - t0
    (root / "timings.json").write_text(json.dumps(timings))
    print(f"\npackaging: build {timings['build_s']:.0f} s, core install {timings['install_s']:.0f} s; venv {venv}")
    yield {"root": root, "sdist": sdist, "wheel": dist / wheel_name, "venv": venv, "py": py, "out": out,
            "otcls": venv / "bin" / "otcls"}


def test_sdist_has_the_sources_the_wheel_needs(core):
    with tarfile.open(core["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "src/otcls/ot/native/fused_sinkhorn.c",
                   "src/otcls/ot/native/sinkhorn_kernel.h", "src/otcls/_extras.py", "src/otcls/cli.py"):
        assert needed in names, f"{needed} missing from {core['sdist'].name}"
    assert not any(n.endswith(".so") for n in names), "a build product of the tree leaked into the sdist"


def test_wheel_ships_the_extension_and_the_console_script(core):
    with zipfile.ZipFile(core["wheel"]) as whl:
        names = whl.namelist()
        entry_points = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "otcls = otcls.cli:main" in entry_points
    if _compiler_present():
        assert any(n.startswith("otcls/ot/_fused_sinkhorn") and n.endswith(".so") for n in names), names
    assert not any(n.startswith("tests/") for n in names)
    source_packages = {str(p.parent.relative_to(REPO / "src")) for p in (REPO / "src" / "otcls").rglob("__init__.py")}
    wheel_packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert source_packages <= wheel_packages, sorted(source_packages - wheel_packages)
    # Unconditional requirements are the core only; every area's packages sit behind an extra marker.
    core_reqs = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                 if line.startswith("Requires-Dist:") and "extra ==" not in line]
    heavy = ("rdkit", "datamol", "torch-geometric", "ogb", "lvis", "pycocotools", "ortools", "wandb", "submitit",
             "tensorboard", "omegaconf", "rich")
    assert not [r for r in core_reqs if r.split("[")[0].split(">")[0].split("=")[0].strip().lower() in heavy]
    assert not [r for r in core_reqs if "==" in r], f"exact pins belong in constraints.txt: {core_reqs}"
    for extra in ("mol", "lvis", "cluster", "slurm", "wandb", "plots", "test", "bench", "all"):
        assert f"Provides-Extra: {extra}" in metadata


def test_core_install_pulls_no_optional_area(core):
    script = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
              f"for m in {NOT_IN_CORE!r}}}))")
    present = json.loads(_run([core["py"], "-c", script], cwd=core["out"]).stdout)
    assert not [m for m, found in present.items() if found], present
    versions = _run([core["py"], "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__)"],
                    cwd=core["out"]).stdout.split()
    assert versions[0].split("+")[0] == "2.14.1" and versions[1].split("+")[0] == "0.29.1", versions


def test_otcls_help_from_the_console_script(core):
    proc = _run([core["otcls"], "--help"], cwd=core["out"])
    for command in ("fit", "test", "sweep", "cluster", "make-molecules"):
        assert command in proc.stdout


def test_fused_solve_matches_a_plain_sinkhorn(core):
    # Reference: textbook Sinkhorn scalings in float64 NumPy, run to convergence (independent of otcls's solver).
    script = r"""
import json, numpy as np, torch, otcls
from otcls.ot import fused, solve
rng = np.random.default_rng(0)
B, n, m, eps = 4, 40, 7, 0.3
C = rng.random((B, n, m)); a = np.full((B, n), 1 / n); b = rng.random((B, m)) + 0.2; b /= b.sum(1, keepdims=True)
ref = []
for k in range(B):
    K = np.exp(-C[k] / eps); u = np.ones(n); v = np.ones(m)
    for _ in range(20000):
        u = a[k] / (K @ v); v = b[k] / (K.T @ u)
    ref.append(u[:, None] * K * v[None, :])
res = solve(torch.tensor(C), torch.tensor(a), torch.tensor(b), eps=eps, method="sinkhorn", fused=True, tol=1e-10,
            max_iter=5000)
print(json.dumps({"available": fused.available(), "file": otcls.__file__, "method": res.method,
                  "max_abs": float(np.abs(res.plan.numpy() - np.stack(ref)).max())}))
"""
    got = json.loads(_run([core["py"], "-c", script], cwd=core["out"]).stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(core["venv"])), got["file"]  # the installed copy, not the source tree
    if not _compiler_present():
        pytest.skip("no C compiler at build time: the wheel carries no fused loop")
    assert got["available"], "the wheel's C extension did not load"
    assert got["max_abs"] < 1e-8, got


@pytest.mark.parametrize("module, extra", [("otcls.cluster", "cluster"), ("otcls.data.molecules", "mol"),
                                           ("otcls.data.lvis", "lvis"), ("otcls.reporting.report", "plots"),
                                           ("otcls.models.gnn", "mol")])
def test_missing_extra_names_the_pip_command(core, module, extra):
    proc = _run([core["py"], "-c", f"import {module}"], cwd=core["out"], check=False)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and f"pip install 'otcls[{extra}]'" in proc.stderr, proc.stderr[-2000:]


def test_core_modules_import_without_extras(core):
    script = ("import otcls.ot, otcls.losses, otcls.heads, otcls.inference, otcls.tasks, otcls.data, otcls.models, "
              "otcls.lightning_cli, otcls.sweeps.cli; from otcls.models import MODELS; print(MODELS.names())")
    assert "gin" in _run([core["py"], "-c", script], cwd=core["out"]).stdout


def test_sweep_without_plots_refuses_before_running(core):
    proc = _run([core["otcls"], "sweep", "--help"], cwd=core["out"], check=False)
    assert proc.returncode != 0 and "pip install 'otcls[plots]'" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"Fashion-MNIST not in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")
def test_one_epoch_fit_from_configs_given_by_path(core):
    """``otcls fit`` with the repository's Fashion-MNIST-LT configs given by path; WANDB_MODE unset, so the run
    also checks that a core install falls back to CSV logging instead of failing on the missing wandb."""
    run = core["root"] / "run"
    proc = _run([core["otcls"], "fit", "--config", REPO / "configs/base/fmnist.yaml",
                 "--config", REPO / "configs/fmnist_lt/reot_ratio.yaml",
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2",
                 "--trainer.limit_test_batches", "1", "--trainer.default_root_dir", run,
                 "--data.init_args.root", core["root"] / "fmnist", "--data.init_args.num_workers", "0"],
                cwd=core["out"], timeout=900)
    assert (run / "checkpoints" / "last.ckpt").is_file(), proc.stderr[-3000:]
    metrics = list(run.glob("logs/*/metrics.csv"))
    assert metrics and "train" in metrics[0].read_text(), proc.stderr[-3000:]
    assert "wandb is not installed" in proc.stderr + proc.stdout, proc.stderr[-3000:]
