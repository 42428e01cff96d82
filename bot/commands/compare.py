"""``lightbox compare --patient-id ID [--modality M] [--body-part B] --out FILE.png``: one side-by-side picture.

The same picture the chat sends for "compare my knee MRIs": the patient's latest study of that kind and
the one before (:func:`store.comparison.plan_comparison`), their best-matching series
(:func:`store.comparison.pair_series`), the middle slice of the newer series (or ``--slice N``) next to
the earlier slice at the same position (:func:`store.comparison.pair_slice`), the same window on both,
each captioned with its date. When nothing comparable exists it says why in one line and exits 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    parser = subparsers.add_parser(
        "compare",
        help="write a side-by-side picture of a patient's latest study and the one before",
        description=(
            "Put the patient's latest study and the earlier one of the same kind side by side (earlier left), "
            "paired slice by slice, same window on both, dates as captions."
        ),
    )
    parser.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    parser.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several")
    parser.add_argument("--modality", default=None, metavar="M", help="only studies of this modality, e.g. MR")
    parser.add_argument("--body-part", default=None, metavar="B", help="only studies of this body part, e.g. knee")
    parser.add_argument("--slice", type=int, default=None, metavar="N",
                        help="slice number in the newer series (1 = first; default: the middle one)")
    parser.add_argument("--max-size", type=int, default=640, metavar="PX", help="longest side of each picture")
    parser.add_argument("--out", required=True, metavar="FILE", help="the picture to write (.png or .jpg)")
    parser.set_defaults(handler=run)


def _write(path: Path, pixels: np.ndarray) -> None:
    """Write the picture whole or not at all (temporary file, then rename)."""
    from PIL import Image

    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CommandError(f"the folder {folder} does not exist")
    handle, temp = tempfile.mkstemp(prefix=".compare-", suffix=path.suffix, dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            Image.fromarray(pixels).save(out, format=fmt)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Plan, pair, render and write the picture; one friendly line when there is nothing to compare."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.app import open_files
    from handlers.previews import picture_source
    from handlers.texts import interval_words, nice_date
    from imaging.compose import side_by_side
    from imaging.errors import RenderError
    from store.audit import record_access
    from store.comparison import pair_series, pair_slice, plan_comparison, stack
    from store.db import transaction
    from store.linking import LinkingError, find_patient_by_identifier

    if args.max_size < 64 or args.max_size > 4096:
        raise CommandError("--max-size must be between 64 and 4096 pixels")
    out = Path(args.out)
    sessions = open_database(settings)
    try:
        try:
            files = open_files(settings, sessions)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        with transaction(sessions) as session:
            try:
                patient = find_patient_by_identifier(session, args.patient_id.strip(), args.issuer)
            except LinkingError as exc:
                raise CommandError(exc.message) from None
            if patient is None:
                raise CommandError("no patient with that Patient ID in this Lightbox")
            plan = plan_comparison(session, patient.id, modality=args.modality or None,
                                   body_part=args.body_part or None)
            if plan.earlier is None or plan.later is None:
                raise CommandError(plan.problem)
            pair = pair_series(session, patient.id, plan.earlier, plan.later)
            if pair is None:
                raise CommandError("One of these studies has no pictures that can be shown side by side.")
            old_stack, new_stack = stack(session, patient.id, pair[0]), stack(session, patient.id, pair[1])
            if not old_stack or not new_stack:
                raise CommandError("One of these studies has no pictures that can be shown side by side.")
            if args.slice is not None and not 1 <= args.slice <= len(new_stack):
                raise CommandError(f"--slice must be from 1 to {len(new_stack)}")
            index = (len(new_stack) - 1) // 2 if args.slice is None else args.slice - 1
            partner = pair_slice(old_stack, new_stack, index)
            try:
                pixels = side_by_side(
                    (picture_source(files, old_stack[partner]), 0),
                    (picture_source(files, new_stack[index]), 0),
                    (nice_date(plan.earlier.study_date), nice_date(plan.later.study_date)),
                    max_size=args.max_size,
                )
            except (RenderError, OSError, ValueError) as exc:
                raise CommandError(f"a picture could not be made ({type(exc).__name__})") from None
            for study in (plan.earlier, plan.later):
                record_access(session, patient.id, "operator", "cli", "view", study_id=study.id,
                              detail="comparison")
            earlier_date, later_date = nice_date(plan.earlier.study_date), nice_date(plan.later.study_date)
            interval = interval_words(plan.earlier.study_date, plan.later.study_date)
            summary = (f"{earlier_date} (slice {partner + 1} of {len(old_stack)}) and {later_date} "
                       f"(slice {index + 1} of {len(new_stack)}), {interval}")
            _write(out, pixels)
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed ({type(exc).__name__})") from None
    finally:
        close_database(sessions)
    print(f"Wrote {out}: {summary}")
    return 0
