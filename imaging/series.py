"""Series helpers: slice order, the key slice, the plane.

Sorting reads Image Orientation (Patient) (0020,0037) and Image Position (Patient) (0020,0032)
(for enhanced multi-frame objects, from the Per-frame and Shared Functional Groups), falling
back to Instance Number (0020,0013) and then to the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import numpy as np
from pydicom.dataset import Dataset

from imaging.geometry import plane_from_orientation, slice_normal

T = TypeVar("T")


def _floats(value: object, count: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return out if len(out) == count else None


def orientation_of(ds: Dataset) -> list[float] | None:
    """Image Orientation (Patient), from the top level or the Shared Functional Groups."""
    found = _floats(ds.get("ImageOrientationPatient"), 6)
    if found is None:
        for group in ds.get("SharedFunctionalGroupsSequence") or []:
            for item in group.get("PlaneOrientationSequence") or []:
                found = _floats(item.get("ImageOrientationPatient"), 6)
    return found


def plane_of(ds: Dataset) -> str:
    """``axial``, ``sagittal``, ``coronal``, ``oblique`` or ``unknown`` for one image."""
    return plane_from_orientation(orientation_of(ds))


def _instance_number(ds: Dataset) -> float | None:
    try:
        return float(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        return None


def sort_instances(items: Sequence[T], dataset_of: Callable[[T], Dataset] | None = None) -> list[T]:
    """Items (datasets, or anything ``dataset_of`` turns into one) in slice order.

    All positions are projected on one normal (the first item's) so a stack sorts consistently
    from one end to the other; items without geometry sort by Instance Number after those with
    it, keeping the given order among ties.
    """
    if not items:
        return []
    datasets = [dataset_of(item) if dataset_of else cast(Dataset, item) for item in items]
    normal = None
    for ds in datasets:
        orientation = orientation_of(ds)
        if orientation is not None:
            normal = slice_normal(orientation)
            break

    def key(pair: tuple[int, T]) -> tuple[int, float, float, int]:
        n, _item = pair
        ds = datasets[n]
        position = _floats(ds.get("ImagePositionPatient"), 3)
        number = _instance_number(ds)
        if normal is not None and np.any(normal) and position is not None:
            return (0, float(np.dot(normal, position)), number if number is not None else 0.0, n)
        return (1, number if number is not None else float("inf"), 0.0, n)

    return [item for _n, item in sorted(enumerate(items), key=key)]


def frame_order(ds: Dataset) -> list[int]:
    """Frame indices of a multi-frame object in slice order (Per-frame Functional Groups'
    Plane Position), else in stored order."""
    frames_seq = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    orientation = orientation_of(ds)
    count = len(frames_seq)
    if not count or orientation is None:
        try:
            count = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            count = 1
        return list(range(count))
    normal = slice_normal(orientation)
    keys = []
    for n, item in enumerate(frames_seq):
        position = None
        for plane in item.get("PlanePositionSequence") or []:
            position = _floats(plane.get("ImagePositionPatient"), 3)
        if position is None:
            return list(range(count))
        keys.append((float(np.dot(normal, position)), n))
    return [n for _loc, n in sorted(keys)]


def key_slice(count: int) -> int:
    """The representative slice of a stack: the middle one (0-based)."""
    return max(0, (count - 1) // 2) if count > 0 else 0


def evenly_spaced(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``count`` items, ends included (all, if fewer)."""
    if count <= 0 or wanted <= 0:
        return []
    if wanted >= count:
        return list(range(count))
    if wanted == 1:
        return [key_slice(count)]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})
