"""A checkpoint's tensors packed into one flat tensor per dtype, for torch.save.

torch.save's pickler calls back into Python for every object it writes, about 15 times per tensor
(its storage, sizes, strides, ...): the 33 small tensors of the digits demo's checkpoint (weights,
Adam's moments, early stopping's best weights, RNG) cost about 1 ms of its 1.5 ms, on the loop's
thread, every epoch. Packed, they are 3 tensors and one JSON string. A file stays a torch.save zip
read with `weights_only=True`; `unpack` returns the payload as it was (each tensor its own copy).
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

MARKER = "rayfit_packed_tensors"  # the key of a packed payload; its value is the layout's version
VERSION = 1


def pack(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with each tensor replaced by None, its place recorded in a JSON layout."""
    tensors: list[tuple[list[Any], torch.Tensor]] = []
    tree = _without_tensors(payload, [], tensors)
    groups: dict[str, list[torch.Tensor]] = {}
    ends: dict[str, int] = {}
    layout = []
    for path, tensor in tensors:
        group = str(tensor.dtype).removeprefix("torch.")
        offset = ends.get(group, 0)
        layout.append([path, group, offset, list(tensor.shape)])
        ends[group] = offset + tensor.numel()
        # joined in CPU memory, as torch.save copies a GPU tensor: no second copy on the GPU
        groups.setdefault(group, []).append(tensor.detach().reshape(-1).cpu())
    blobs = {group: torch.cat(members) for group, members in groups.items()}
    return {MARKER: VERSION, "tree": tree, "layout": json.dumps(layout), "blobs": blobs}


def unpack(loaded: Any) -> Any:
    """The payload `pack` was given; anything not packed is returned as it is. Raises ValueError
    on a layout that does not fit its tensors (the file may come from someone else): each packed
    tensor must be split exactly into its entries, so unpacking takes no more memory than the file."""
    if not isinstance(loaded, dict) or MARKER not in loaded:
        return loaded
    if loaded[MARKER] != VERSION:
        raise ValueError(f"packed tensors of version {loaded[MARKER]!r}; this rayfit reads version {VERSION}")
    try:
        placed = _split(json.loads(loaded["layout"]), loaded["blobs"])
        tree = loaded["tree"]
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"a packed-tensor layout that does not fit its tensors ({exc!r})") from exc
    rebuilt = _with_tensors(tree, (), placed)
    if placed:
        raise ValueError(f"packed tensors with no place in the payload: {sorted(placed)[:3]}")
    return rebuilt


def _split(layout: list[Any], blobs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each path's tensor, a copy of its piece of its packed tensor. Each packed tensor must be a
    plain 1-D tensor cut by the layout into pieces that follow one another from its start to its
    end, each path once; all is checked before anything is copied."""
    if not isinstance(layout, list) or not isinstance(blobs, dict):
        raise ValueError("the packed-tensor layout is not a list")
    ends = dict.fromkeys(blobs, 0)
    pieces = {}
    for path, group, offset, shape in layout:
        blob = blobs[group]
        if not (isinstance(blob, torch.Tensor) and blob.dim() == 1 and blob.is_contiguous()):
            raise ValueError(f"packed {group} is not a 1-D tensor of its own")
        if offset != ends[group]:
            raise ValueError(f"tensor {path} lies outside its place in the packed {group} tensor")
        ends[group] = offset + _numel(shape)
        if ends[group] > blob.numel():
            raise ValueError(f"tensor {path} lies outside its place in the packed {group} tensor")
        pieces[_key(path)] = (blob, offset, shape)
    if len(pieces) != len(layout):
        raise ValueError("the packed-tensor layout names a place twice")
    for group, end in ends.items():
        if end != blobs[group].numel():
            raise ValueError(f"the packed {group} tensor holds more than its layout says")
    return {key: blob[offset : offset + math.prod(shape)].reshape(shape).clone()
            for key, (blob, offset, shape) in pieces.items()}


def _without_tensors(obj: Any, path: list[Any], found: list[tuple[list[Any], torch.Tensor]]) -> Any:
    if isinstance(obj, torch.Tensor):
        found.append((path, obj))
        return None
    if isinstance(obj, dict):
        return {k: _without_tensors(v, [*path, k], found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_without_tensors(v, [*path, i], found) for i, v in enumerate(obj))
    return obj


def _with_tensors(obj: Any, path: tuple[Any, ...], placed: dict[str, torch.Tensor]) -> Any:
    """`obj` with the tensor of each recorded path put back (and taken out of `placed`)."""
    if obj is None:
        return placed.pop(_key(list(path)), None)
    if isinstance(obj, dict):
        return {k: _with_tensors(v, (*path, k), placed) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_with_tensors(v, (*path, i), placed) for i, v in enumerate(obj))
    return obj


def _key(path: list[Any]) -> str:
    # JSON keeps a path's int keys (optimizer state) apart from str keys, as pickle does
    return json.dumps(path)


def _numel(shape: Any) -> int:
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"a packed tensor's shape is not a list of sizes: {shape!r}")
    return math.prod(shape)
