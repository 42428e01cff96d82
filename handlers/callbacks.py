"""Callback data: what a button means, packed into Telegram's 1 to 64 bytes.

Callback data comes back from the user's phone and is untrusted. It names objects only by their
opaque ``public_id`` (32 hex characters), never by a row id or a DICOM UID, and every handler looks
the object up *for the chat's patient*: a forged, replayed or stale button finds nothing and gets
"this button has expired". The study card is stateless: the whole view (series, slice, window,
rotation, zoom, invert) travels in the button, so any worker can answer any tap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from telegram.constants import InlineKeyboardButtonLimit

MAX_BYTES = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA
_PUBLIC_ID = re.compile(r"^[0-9a-f]{32}$")

# Window codes on the card: d = the file's own default, u = automatic, then the CT presets.
WINDOW_CODES = {
    "d": "default",
    "u": "auto",
    "b": "brain",
    "s": "subdural",
    "k": "stroke",
    "l": "lung",
    "m": "mediastinum",
    "a": "abdomen",
    "v": "liver",
    "o": "bone",
}
WINDOW_BY_NAME = {name: code for code, name in WINDOW_CODES.items()}


class BadCallback(ValueError):
    """Callback data that is not ours, or not well formed."""


@dataclass(frozen=True)
class View:
    """One state of a study card: which slice of which series, and how it is shown."""

    series: str
    slice: int = -1  # -1: the key (middle) slice
    window: str = "d"
    rotate: int = 0  # quarter turns clockwise, 0..3
    zoom: int = 0  # 0 = whole image, 1..4 = quadrant (top-left, top-right, bottom-left, bottom-right)
    invert: bool = False

    def with_(self, **changes: object) -> View:
        return replace(self, **changes)  # type: ignore[arg-type]


def _check_id(value: str) -> str:
    if not _PUBLIC_ID.match(value):
        raise BadCallback("not a public id")
    return value


def encode_view(view: View) -> str:
    """``v|<series>|<slice>|<window><rotate><zoom><invert>``, at most 64 bytes."""
    data = f"v|{view.series}|{view.slice}|{view.window}{view.rotate}{view.zoom}{int(view.invert)}"
    assert len(data.encode()) <= MAX_BYTES
    return data


def decode_view(data: str) -> View:
    """The :class:`View` in ``data``; :class:`BadCallback` for anything malformed."""
    parts = data.split("|")
    if len(parts) != 4 or parts[0] != "v":
        raise BadCallback("not a view")
    series = _check_id(parts[1])
    try:
        slice_index = int(parts[2])
    except ValueError:
        raise BadCallback("bad slice") from None
    flags = parts[3]
    if len(flags) != 4 or flags[0] not in WINDOW_CODES or flags[1] not in "0123" or flags[2] not in "01234":
        raise BadCallback("bad flags")
    if flags[3] not in "01" or slice_index < -1 or slice_index > 1_000_000:
        raise BadCallback("bad flags")
    return View(series, slice_index, flags[0], int(flags[1]), int(flags[2]), flags[3] == "1")


@dataclass(frozen=True)
class Action:
    """A button other than navigation: ``kind`` and the public id (or short argument) it names."""

    kind: str
    ref: str
    extra: str = ""


# kind -> whether its ref must be a public id
ACTION_KINDS = {
    "open": True,  # open a study's card: ref = study
    "series": True,  # choose among a study's series: ref = study
    "explain_image": True,  # describe the image: ref = series
    "share": True,  # share this study: ref = study
    "compare": True,  # compare this study with the one before: ref = study
    "revoke": True,  # revoke a share link: ref = share link
    "forget_yes": False,  # confirm /forget: ref = a short nonce stored in chat_data
    "forget_no": False,
    "claim": True,  # "these images are mine" after an upload: ref = patient
    "claim_none": False,
    "term": False,  # explain a glossary term: ref = concept id
    "del_note": True,  # delete a note or mark: ref = annotation
    "cine": True,  # play the series as an animation: ref = series
    "protect": False,  # toggle protect_content: ref = "on"/"off"
    "lang": False,  # choose a language: ref = code
    "studies": False,  # list page: ref = page number
}
_SHORT_REF = re.compile(r"^[a-z0-9_]{1,48}$")


def encode_action(kind: str, ref: str, extra: str = "") -> str:
    """``a|<kind>|<ref>[|<extra>]``, at most 64 bytes."""
    if kind not in ACTION_KINDS:
        raise ValueError(f"unknown action {kind}")
    data = f"a|{kind}|{ref}" + (f"|{extra}" if extra else "")
    if len(data.encode()) > MAX_BYTES:
        raise ValueError("callback data too long")
    return data


def decode_action(data: str) -> Action:
    """The :class:`Action` in ``data``; :class:`BadCallback` for anything malformed."""
    parts = data.split("|")
    if len(parts) not in (3, 4) or parts[0] != "a" or parts[1] not in ACTION_KINDS:
        raise BadCallback("not an action")
    kind, ref = parts[1], parts[2]
    if ACTION_KINDS[kind]:
        _check_id(ref)
    elif not _SHORT_REF.match(ref):
        raise BadCallback("bad argument")
    extra = parts[3] if len(parts) == 4 else ""
    if extra and not _SHORT_REF.match(extra):
        raise BadCallback("bad argument")
    return Action(kind, ref, extra)
