"""The mutation list of `make mutation-check` stays applicable: every entry is complete, every original text
occurs exactly once in its file, and every test it names exists."""
from __future__ import annotations

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runner():
    spec = importlib.util.spec_from_file_location("mutation_run", os.path.join(REPO, "experiments", "mutation", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_mutation_applies_exactly_once():
    run = runner()
    entries, problems = run.problems(run.ROOT / "tests" / "mutations.yaml")
    assert problems == []
    assert len(entries) >= 25
    packages = {e["file"].split("/")[2] for e in entries if e["file"].startswith("src/otcls/")}
    assert {"ot", "losses", "inference", "reporting"} <= packages


def test_every_named_test_exists():
    run = runner()
    for e in run.load(run.ROOT / "tests" / "mutations.yaml"):
        for node in e["tests"]:
            path, _, name = node.partition("::")
            assert os.path.isfile(os.path.join(REPO, path)), (e["id"], node)
            if name:
                with open(os.path.join(REPO, path)) as fh:
                    assert f"def {name.split('[')[0]}(" in fh.read(), (e["id"], node)


def test_a_broken_entry_is_reported(tmp_path):
    run = runner()
    bad = tmp_path / "m.yaml"
    bad.write_text('- {id: x, file: src/otcls/ot/chunking.py, original: "torch", replacement: "np", tests: [t]}\n'
                   '- {id: x, file: src/otcls/ot/chunking.py, original: "no such text", replacement: "y", tests: [t]}\n')
    _, problems = run.problems(bad)
    assert any("occurs" in p and "times" in p for p in problems)
    assert any("occurs 0 times" in p for p in problems)
    assert any("duplicate mutation id x" in p for p in problems)
    with pytest.raises(ValueError, match="exactly once"):
        run.load(bad)
