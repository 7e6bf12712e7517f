"""W&B metadata of a real offline run, read back from the run's ``.wandb`` file."""
from __future__ import annotations

import glob
import json
import os


from otcls.lightning_cli import run

from .test_cli_images import fmnist_args

BLOCK, HEADER = 32768, 7


def wandb_records(path: str) -> list:
    """Every protobuf ``Record`` of a ``.wandb`` file (LevelDB-style log: 32 KiB blocks, 7-byte record headers
    of crc32, little-endian length and type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4, after a 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, chunks, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        body = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            chunks.append(body)
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        elif kind == 4:
            chunks.append(pending + body)
    records = []
    for chunk in chunks:
        rec = pb.Record()
        rec.ParseFromString(chunk)
        records.append(rec)
    return records


def test_offline_run_has_name_group_job_type_tags_and_config(fmnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = str(tmp_path / "run")
    run(["fit", *fmnist_args(fmnist_root, root), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "1", "--test_after_fit", "true", "--seed_everything", "3"])
    files = glob.glob(os.path.join(root, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1
    records = wandb_records(files[0])
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs, "no run record"
    meta = runs[0]
    assert meta.display_name == "ce-s3"
    assert meta.run_group == "FashionMNISTLT-IF10"
    assert meta.job_type == "fit"
    assert set(meta.tags) == {"method:ce", "loss:ce", "benchmark:FashionMNISTLT-IF10", "seed:3", "IF:10"}
    assert meta.run_id == open(os.path.join(root, "wandb_id.txt")).read().strip()
    config = {}
    for r in records:
        items = r.config.update if r.WhichOneof("record_type") == "config" else []
        config.update({item.key: json.loads(item.value_json) for item in items})
    for item in meta.config.update:
        config.setdefault(item.key, json.loads(item.value_json))
    cli = config["cli"]["value"] if "value" in config.get("cli", {}) else config["cli"]
    assert cli["seed_everything"] == 3 and cli["data"]["init_args"]["seed"] == 3  # data seed follows the run seed
    assert cli["model"]["init_args"]["loss"] == "ce"
    keys = {item.key or "/".join(item.nested_key) for r in records if r.WhichOneof("record_type") == "history"
            for item in r.history.item}
    assert "val/bal_acc" in keys and "test/balanced/dbot:known/top1" in keys
    assert any("per_class" in k for k in keys)  # the per-class accuracy table
