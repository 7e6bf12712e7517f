"""LVIS evaluation glue: torchvision detections → LVIS result records → ``lvis.LVISEval``.

Metrics per IoU type (``segm``, ``bbox``): AP, AP50, AP75, APr, APc, APf (LVIS's own numbers;
a group without categories reports -1, as ``LVISEval`` does).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, List, Sequence

from otcls._extras import require

require("lvis", "lvis", "pycocotools")

import numpy as np  # noqa: E402
import pycocotools.mask as mask_utils  # noqa: E402
import torch  # noqa: E402
from lvis import LVIS, LVISEval, LVISResults  # noqa: E402

METRICS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
IOU_TYPES = ("segm", "bbox")


@contextlib.contextmanager
def _numpy_float_alias() -> Iterator[None]:
    """lvis 0.5.3 calls ``np.float`` (removed in NumPy 1.24); provide it only while LVISEval runs."""
    added = not hasattr(np, "float")
    if added:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del np.float  # type: ignore[attr-defined]


def detections_to_lvis(outputs: Sequence[Dict[str, torch.Tensor]], image_ids: Sequence[int],
                       category_ids: Sequence[int], mask_threshold: float = 0.5) -> List[Dict]:
    """LVIS result records from torchvision outputs (``boxes`` xyxy, ``labels`` 1..K, ``scores``, ``masks`` (n,1,H,W)).

    ``category_ids[k-1]`` is the LVIS id of label ``k``; masks are binarised at ``mask_threshold``
    and stored as compressed RLE.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"got {len(outputs)} outputs for {len(image_ids)} image ids")
    records = []
    for out, img_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().double()
        labels = out["labels"].detach().cpu()
        if labels.numel() and (labels.min() < 1 or labels.max() > len(category_ids)):
            raise ValueError(f"labels must lie in 1..{len(category_ids)} (0 is background), got "
                             f"{labels.min().item()}..{labels.max().item()}")
        scores = out["scores"].detach().cpu()
        masks = out.get("masks")
        rles = []
        if masks is not None and len(boxes):
            binary = (masks.detach().cpu()[:, 0] > mask_threshold).numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        for k in range(len(boxes)):
            x1, y1, x2, y2 = boxes[k].tolist()
            rec = {"image_id": int(img_id), "category_id": int(category_ids[int(labels[k]) - 1]),
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[k])}
            if rles:
                rle = dict(rles[k])
                rle["counts"] = rle["counts"].decode("ascii")
                rec["segmentation"] = rle
            records.append(rec)
    return records


def merge_rank_detections(parts: Sequence[Dict[str, Dict[int, List[Dict]]]]) -> Dict[str, Dict[int, List[Dict]]]:
    """Merge every rank's ``{setting: {image id: result records}}``, keeping the first rank's records of an
    image: the distributed sampler repeats images to fill the last batch, and their detections must count
    once (twice, they would be false positives)."""
    merged: Dict[str, Dict[int, List[Dict]]] = {}
    for part in parts:
        for setting, per_image in part.items():
            into = merged.setdefault(setting, {})
            for img_id, recs in per_image.items():
                into.setdefault(img_id, recs)
    return merged


def evaluate_lvis(gt: LVIS, results: List[Dict], image_ids: Sequence[int],
                  iou_types: Sequence[str] = IOU_TYPES, max_dets: int = 300) -> Dict[str, float]:
    """Run ``LVISEval`` on the images ``image_ids``; returns ``{"segm/AP": ..., "bbox/APr": ...}``.

    No detection at all gives 0 for every metric (LVISEval cannot take an empty result list).
    """
    bad = [t for t in iou_types if t not in IOU_TYPES]
    if bad:
        raise ValueError(f"iou_types must be among {IOU_TYPES}, got {bad}")
    if not results:
        return {f"{t}/{m}": 0.0 for t in iou_types for m in METRICS}
    if "segm" in iou_types and any("segmentation" not in r for r in results):
        raise ValueError("segm evaluation needs a 'segmentation' (RLE) in every result; "
                         "use a model with a mask head or iou_types=['bbox']")
    metrics = {}
    logging.getLogger("lvis").setLevel(logging.ERROR)
    for iou_type in iou_types:
        # bbox: LVISResults would replace missing polygons by boxes; drop masks so bbox IoU is used.
        recs = [dict(r) for r in results] if iou_type == "segm" else \
            [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
        dt = LVISResults(gt, recs, max_dets=max_dets)
        ev = LVISEval(gt, dt, iou_type=iou_type)
        ev.params.img_ids = sorted(int(i) for i in image_ids)
        with _numpy_float_alias():
            ev.run()
        for m in METRICS:
            metrics[f"{iou_type}/{m}"] = float(ev.results[m])
    return metrics
