"""Callback data of the "mark" flow: ``m|<series public id>|<slice>|<cell>|<sub-cell>``.

Cell 0 means "show the 3 x 3 grid"; a cell with sub-cell 0 means "show that cell's grid"; both set means
"put a marker in the middle of that sub-cell". Untrusted like every callback: the series is looked up for
the chat's patient.
"""

from __future__ import annotations

import re

from handlers.callbacks import BadCallback

_MARK = re.compile(r"^m\|([0-9a-f]{32})\|(\d{1,7})\|([0-9])\|([0-9])$")


def encode_mark(series: str, slice_index: int, cell: int, sub_cell: int) -> str:
    return f"m|{series}|{slice_index}|{cell}|{sub_cell}"


def decode_mark(data: str) -> tuple[str, int, int, int]:
    found = _MARK.match(data)
    if found is None:
        raise BadCallback("not a mark")
    series, slice_index, cell, sub_cell = found.group(1), int(found.group(2)), int(found.group(3)), int(found.group(4))
    if sub_cell and not cell:
        raise BadCallback("sub-cell without a cell")
    return series, slice_index, cell, sub_cell
