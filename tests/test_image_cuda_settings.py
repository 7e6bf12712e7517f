"""ImageClassifier's CUDA settings that a CPU can still check: channels-last layout and the torch.compile flag."""
from __future__ import annotations

import pytest
import torch

from otcls.tasks import ImageClassifier

KW = dict(backbone="conv_mlp", backbone_kwargs={"in_channels": 3, "channels": [4, 8], "hidden": 16,
                                                 "image_size": 16}, num_classes=3, class_counts=[5, 3, 2])


def test_channels_last_on_cuda_and_cpu_not_elsewhere(monkeypatch):
    torch.manual_seed(0)
    model = ImageClassifier(**KW).eval()
    x = torch.randn(4, 3, 16, 16)
    ref = model(x)
    monkeypatch.setattr(model, "_device", torch.device("mps"))  # a device without the preference: layout stays
    model._set_memory_format()
    assert model.backbone.body[0].weight.is_contiguous()
    monkeypatch.setattr(model, "_device", torch.device("cpu"))
    model.on_fit_start()
    w = model.backbone.body[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)  # same function, other layout
    off = ImageClassifier(**KW, channels_last=False)
    monkeypatch.setattr(off, "_device", torch.device("cuda", 0))
    off._set_memory_format()
    assert off.backbone.body[0].weight.is_contiguous()


@pytest.mark.timeout(600)
def test_compile_gives_the_same_outputs_and_checkpoint_keys():
    torch.manual_seed(0)
    plain = ImageClassifier(**KW).eval()
    compiled = ImageClassifier(**KW, compile=True).eval()
    compiled.load_state_dict(plain.state_dict())
    assert list(compiled.state_dict()) == list(plain.state_dict())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), rtol=1e-4, atol=1e-5)
    assert type(compiled._run_backbone).__name__ == "OptimizedModule"
