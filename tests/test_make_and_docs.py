"""The Makefile's help and data dependencies, and the shipped docs: links that resolve inside the repository,
no references to issue numbers."""
from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKEFILES = [os.path.join(REPO, "Makefile"), *sorted(glob.glob(os.path.join(REPO, "make", "*.mk")))]


def phony_targets() -> list:
    targets = []
    for path in MAKEFILES:
        with open(path) as fh:
            for line in fh:
                if line.startswith(".PHONY:"):
                    targets += line.split(":", 1)[1].split()
    return targets


def prerequisites(target: str) -> list:
    for path in MAKEFILES:
        with open(path) as fh:
            for line in fh:
                if line.startswith(f"{target}:"):
                    return line.split(":", 1)[1].split("##")[0].split()
    raise AssertionError(f"no rule for {target}")


def test_make_help_lists_every_target_once_with_one_line():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == 2 and row[1].strip() for row in rows), out
    listed = [name for name, _ in rows]
    assert sorted(listed) == sorted(set(phony_targets()))


@pytest.mark.parametrize("target", ["demo", "test", "figures", "contrastive-demo"])
def test_targets_that_read_fashion_mnist_fetch_it_first(target):
    assert "data-fmnist" in prerequisites(target)


def tracked_text_files() -> list:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [n for n in names if n.endswith((".py", ".md", ".yaml", ".yml", ".mk", ".cfg", ".toml", ".txt", ".sh"))
            or n in ("Makefile",)]


def test_no_file_refers_to_an_issue_number():
    pattern = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)
    hits = []
    for name in tracked_text_files():
        with open(os.path.join(REPO, name), errors="replace") as fh:
            hits += [f"{name}: {m.group(0)}" for m in pattern.finditer(fh.read())]
    assert not hits


def test_doc_links_resolve_inside_the_repository():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for doc in [os.path.join(REPO, "README.md"), *glob.glob(os.path.join(REPO, "docs", "*.md"))]:
        with open(doc) as fh:
            targets = [t for t in link.findall(fh.read()) if "://" not in t]
        for target in targets:
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target))
            assert path.startswith(REPO + os.sep), f"{doc}: {target} points outside the repository"
            assert os.path.exists(path), f"{doc}: {target} does not exist"
