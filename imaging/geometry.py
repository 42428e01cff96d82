"""Where a slice lies in the patient: plane and position from the DICOM geometry.

Reads Image Orientation (Patient) (0020,0037) and Image Position (Patient) (0020,0032).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A plane is told from the slice normal; within this cosine of an axis it counts as that plane.
_PLANE_TOLERANCE = 0.8


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of a slice from its six direction cosines (row, column)."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm else normal


def plane_from_orientation(orientation: Sequence[float] | None) -> str:
    """``axial``, ``sagittal``, ``coronal``, ``oblique`` or ``unknown`` from Image Orientation (Patient)."""
    if orientation is None or len(orientation) != 6:
        return "unknown"
    try:
        normal = slice_normal([float(v) for v in orientation])
    except (TypeError, ValueError):
        return "unknown"
    if not np.any(normal):
        return "unknown"
    axis = int(np.argmax(np.abs(normal)))
    if abs(float(normal[axis])) < _PLANE_TOLERANCE:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def slice_location(orientation: Sequence[float] | None, position: Sequence[float] | None) -> float | None:
    """Distance of a slice along its normal (mm), or ``None`` when the geometry is missing."""
    if orientation is None or position is None or len(orientation) != 6 or len(position) != 3:
        return None
    try:
        normal = slice_normal([float(v) for v in orientation])
        return float(np.dot(normal, np.asarray([float(v) for v in position], dtype=float)))
    except (TypeError, ValueError):
        return None
