"""A checkpoint's tensors packed per dtype: the payload comes back as it was, and a doctored
layout is refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from rayfit.backends import packed_tensors
from rayfit.backends.torch_backend import load_checked, torch_bytes
from rayfit.errors import CheckpointError


def payload() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "backend": {
            "model": {"0.weight": torch.randn(4, 3, generator=generator).t(), "0.bias": torch.zeros(4)},
            # int keys, as in an optimizer's state dict: they must not come back as strings
            "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 2, generator=generator)}},
                          "param_groups": [{"params": [0], "betas": (0.9, 0.999), "lr": 1e-3}]},
            "grads": [None, None],
            "ranks": [{"torch_rng": torch.get_rng_state(), "metrics": (torch.arange(3), None)}],
        },
        "loop": {"epoch": 2, "history": "[]", "stop_reason": None},
        "nan": float("nan"),
    }


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b or (a != a and b != b)


def test_a_packed_payload_comes_back_as_it_was(tmp_path):
    original = payload()
    packed = packed_tensors.pack(original)
    assert sorted(packed["blobs"]) == ["float32", "int64", "uint8"]  # one tensor per dtype
    path = tmp_path / "ckpt.pt"
    path.write_bytes(torch_bytes(packed))
    loaded = load_checked(path)
    assert same(original, loaded)
    weight = loaded["backend"]["model"]["0.weight"]
    weight.add_(1)  # each tensor is its own: the others in its packed tensor do not move
    assert torch.equal(loaded["backend"]["model"]["0.bias"], torch.zeros(4))


def test_an_unpacked_file_loads_as_before(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(torch_bytes({"w": torch.ones(2)}))
    assert same(load_checked(path), {"w": torch.ones(2)})


def layout(*entries) -> str:
    return json.dumps([list(e) for e in entries])


@pytest.mark.parametrize("doctor, expected", [
    (lambda p: p.update(layout=layout((["w"], "float32", 10, [4]))), "lies outside its place in the packed float32"),
    (lambda p: p.update(layout=layout((["w"], "float32", 0, [5]))), "lies outside"),
    (lambda p: p.update(layout=layout((["w"], "int8", 0, [1]))), "does not fit its tensors"),
    (lambda p: p.update(layout=layout((["w"], "float32", 0, ["x"]))), "shape is not a list of sizes"),
    (lambda p: p.update(layout=layout((["nowhere"], "float32", 0, [4]))), "no place in the payload"),
    (lambda p: p.update(layout="not json"), "not a readable rayfit checkpoint"),
    (lambda p: p.update({packed_tensors.MARKER: 99}), "version 99"),
    # what would make a small file take much memory: one tensor read many times over, or a
    # tensor of one value made to look large
    (lambda p: p.update(layout=layout((["w"], "float32", 0, [4]), (["w"], "float32", 0, [4]))), "outside its place"),
    (lambda p: p.update(layout=layout((["w"], "float32", 0, [2]), (["w"], "float32", 2, [2]))), "names a place twice"),
    (lambda p: p.update(layout=layout((["w"], "float32", 0, [2]))), "holds more than its layout says"),
    (lambda p: p.update(blobs={"float32": torch.zeros(1).expand(10**8)},
                        layout=layout((["w"], "float32", 0, [10**8]))), "not a 1-D tensor of its own"),
])
def test_a_doctored_layout_is_refused_in_one_line(tmp_path, doctor, expected):
    packed = packed_tensors.pack({"w": torch.ones(4)})
    doctor(packed)
    path = tmp_path / "ckpt.pt"
    path.write_bytes(torch_bytes(packed))
    with pytest.raises(CheckpointError, match=expected) as caught:
        load_checked(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
