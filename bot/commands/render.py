"""``lightbox render INPUT... --out PATH``: DICOM files to pictures, from the command line.

With one input, ``--out`` is the output file (or an existing folder); with several, ``--out`` is
a folder and each picture is named after its input. A file that cannot be rendered gets one line
on stderr naming it and the reason; the others are still rendered and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from bot.commands import CommandError
from bot.settings import Settings
from imaging.display import CT_PRESETS, WindowChoice
from imaging.encode import EXTENSIONS, FORMATS, encode
from imaging.errors import RenderError
from imaging.render import render_frame


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``render`` sub-command."""
    parser = subparsers.add_parser(
        "render",
        help="render DICOM files to PNG, JPEG or WebP pictures",
        description=(
            "Render one frame of each DICOM file to a picture. Default window: the first one stored "
            "in the file, else an automatic one."
        ),
    )
    # Let "--window -600,1500" through as a value, not an unknown option (argparse only knows
    # plain negative numbers like -600).
    parser._negative_number_matcher = re.compile(r"^-\d*\.?\d+(,-?\d*\.?\d+)*$")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM file(s)")
    parser.add_argument(
        "--out", required=True, metavar="PATH", help="output file (one input) or folder (several inputs)"
    )
    parser.add_argument("--frame", type=int, default=0, metavar="N", help="frame number, 0 = first (default 0)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--window", metavar="CENTER,WIDTH", help="explicit window in modality units (HU for CT)")
    group.add_argument("--preset", choices=sorted(CT_PRESETS), help="CT window preset")
    group.add_argument("--auto-window", action="store_true", help="automatic window from the image itself")
    parser.add_argument("--rotate", type=int, default=0, choices=(0, 90, 180, 270), metavar="DEG",
                        help="rotate clockwise by 0, 90, 180 or 270 degrees")
    parser.add_argument("--flip", choices=("h", "v"), help="mirror left-right (h) or top-bottom (v)")
    parser.add_argument("--invert", action="store_true", help="negative picture")
    parser.add_argument("--zoom", metavar="X,Y,W,H", help="region to show, each 0..1 of the (rotated) picture")
    parser.add_argument("--max-size", type=int, default=0, metavar="PX",
                        help="longest side in pixels; 0 = native size (default)")
    parser.add_argument("--format", choices=FORMATS, help="picture format (default: from --out, else png)")
    parser.set_defaults(handler=run)


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise CommandError(f"{what} must be {count} numbers separated by commas, not {text!r}") from None
    if len(values) != count:
        raise CommandError(f"{what} must be {count} numbers separated by commas, not {text!r}")
    return values


def window_choice(args: argparse.Namespace) -> WindowChoice:
    """The window the options ask for."""
    try:
        if args.window:
            center, width = _numbers(args.window, 2, "--window")
            return WindowChoice.explicit(center, width)
        if args.preset:
            return WindowChoice.preset(args.preset)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.auto_window:
        return WindowChoice.auto()
    return WindowChoice()


def _format_for(args: argparse.Namespace, out: Path | None) -> str:
    if args.format:
        return str(args.format)
    suffix = out.suffix.lower() if out else ""
    return {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(suffix, "png")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, so no half-written picture is left."""
    fd, tmp = tempfile.mkstemp(prefix=".lightbox-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _targets(inputs: list[Path], out: Path, fmt: str, single_file: bool) -> list[Path]:
    if single_file:
        return [out]
    names: set[str] = set()
    targets = []
    for source in inputs:
        stem = source.stem if source.suffix.lower() in {".dcm", ".dicom", ".ima"} else source.name
        name, n = stem + EXTENSIONS[fmt], 2
        while name in names:  # two inputs with one name in different folders
            name, n = f"{stem}-{n}{EXTENSIONS[fmt]}", n + 1
        names.add(name)
        targets.append(out / name)
    return targets


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Render every input; one line per failure; exit 1 if any failed."""
    choice = window_choice(args)
    zoom = None
    if args.zoom:
        x, y, w, h = _numbers(args.zoom, 4, "--zoom")
        zoom = (x, y, w, h)
    if args.max_size < 0:
        raise CommandError("--max-size must be 0 (native size) or more")
    if args.frame < 0:
        raise CommandError("--frame must be 0 or more (0 is the first frame)")
    inputs = [Path(p) for p in args.inputs]
    out = Path(args.out)
    wants_folder = args.out.endswith(("/", os.sep)) or out.is_dir()
    single_file = len(inputs) == 1 and not wants_folder
    fmt = _format_for(args, out if single_file else None)
    if single_file:
        if not out.parent.exists():
            raise CommandError(f"the folder for {out} does not exist")
    else:
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out} must be a folder when rendering several files")
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for source, target in zip(inputs, _targets(inputs, out, fmt, single_file), strict=True):
        try:
            pixels = render_frame(
                source,
                args.frame,
                choice,
                rotate=args.rotate,
                flip=args.flip,
                invert=args.invert,
                zoom=zoom,
                max_size=args.max_size,
                max_pixels=settings.max_pixels,
            )
            _write_atomically(target, encode(pixels, fmt))
        except RenderError as exc:
            failures += 1
            print(f"lightbox render: {source}: {exc.reason}: {exc}", file=sys.stderr)
            continue
        except FileNotFoundError:
            failures += 1
            print(f"lightbox render: {source}: not-found: There is no such file.", file=sys.stderr)
            continue
        except ValueError as exc:  # an option that does not fit this image (e.g. stored window number)
            failures += 1
            print(f"lightbox render: {source}: bad-option: {exc}", file=sys.stderr)
            continue
        except OSError as exc:
            failures += 1
            print(f"lightbox render: {source}: unreadable: {exc.strerror or exc}", file=sys.stderr)
            continue
        print(f"{source} -> {target}")
    return 1 if failures else 0
