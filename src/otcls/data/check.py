"""``otcls check-data --config BASE.yaml DATA.yaml [--root DIR] [--set KEY=VALUE ...]``: is a benchmark's data there, before any run starts?

Builds the config's DataModule (``data.class_path`` / ``init_args`` of the merged YAML files, then ``--root``
and each ``--set`` on top), runs its ``prepare_data`` (which downloads where the config allows it and the
network does) and reads the index of every split (train, val, test: for ImageNet-LT its three list files). Missing or unreadable data ends with one message — what is missing, where it
looked, how to get it, and ``DATA_ROOT`` to point elsewhere — and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import urllib.error
from typing import Any, Dict, List, Optional

import yaml


def merged_data_config(paths: List[str]) -> Dict[str, Any]:
    """``{"class_path", "init_args"}`` of ``data`` after merging the files in order (later files win)."""
    out: Dict[str, Any] = {"class_path": None, "init_args": {}}
    for path in paths:
        with open(path) as fh:
            data = (yaml.safe_load(fh) or {}).get("data") or {}
        out["class_path"] = data.get("class_path", out["class_path"])
        out["init_args"].update(data.get("init_args") or {})
    if not out["class_path"]:
        raise ValueError(f"no data.class_path in {paths}")
    return out


def parse_settings(pairs: List[str]) -> Dict[str, Any]:
    """``["list_dir=/data/lists", "seed=1"]`` -> ``{"list_dir": "/data/lists", "seed": 1}`` (values read as YAML)."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (a data.init_args key), got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def check(paths: List[str], root: Optional[str] = None, download: Optional[bool] = None,
          settings: Optional[Dict[str, Any]] = None) -> str:
    """Raise ValueError with a user-facing message unless the data is readable; return a one-line summary."""
    cfg = merged_data_config(paths)
    module, _, name = cfg["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    kwargs = dict(cfg["init_args"])
    if root:
        kwargs["root"] = root
    kwargs.update(settings or {})
    if download is not None and "download" in kwargs:
        kwargs["download"] = download
    dm = cls(**kwargs)
    where = f"'{kwargs.get('root')}'"
    try:
        dm.prepare_data()
        _, targets = dm.load_split("train")
        for split in ("val", "test"):  # None where the split is held out of train, or absent
            dm.load_split(split)
    except (urllib.error.URLError, OSError) as exc:  # an unreadable folder; downloads report themselves
        raise ValueError(f"{name}: data in {where} could not be read ({type(exc).__name__}: {exc})."
                         " Point DATA_ROOT=... at a folder that has the data.") from None
    return f"{name}: {len(targets)} training images in {where}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="otcls check-data", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", nargs="+", required=True, help="config files with the data section")
    p.add_argument("--root", default=None, help="data folder (overrides data.init_args.root)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another data.init_args value, e.g. list_dir=/data/imagenet_lt (repeatable)")
    p.add_argument("--no-download", action="store_true", help="never download, only look")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        print(check(args.config, args.root, False if args.no_download else None, parse_settings(args.set)))
    except ValueError as exc:
        hint = "" if "DATA_ROOT" in str(exc) else " Point DATA_ROOT=... (or --root) at the folder that has the data."
        print(f"otcls check-data: {exc}{hint}", file=sys.stderr)
        return 2
    return 0
