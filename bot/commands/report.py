"""``lightbox report FILE_OR_FOLDER [--json]``: a study's report text, with the glossary words in it.

Reads DICOM Structured Reports, DICOM Encapsulated PDF/CDA documents, bare PDFs and plain
text. In a folder, every report found is printed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from bot.commands import CommandError
from bot.commands.describe import dicom_files, quiet_pydicom
from bot.commands.explain import glossary_or_error
from bot.settings import Settings
from glossary.lookup import Glossary
from glossary.reports import Report, ReportError, is_report, report_from_bytes, report_from_dataset

MAX_REPORT_BYTES = 100 * 1024 * 1024
REPORT_SUFFIXES = {".pdf", ".txt"}
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="print a report's text with the glossary words it contains",
        description="Print the text of a report (DICOM SR, encapsulated PDF, PDF or text) and explain its words.",
    )
    parser.add_argument("path", metavar="FILE_OR_FOLDER", help="a report file, or a study folder")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def read_report(path: Path) -> Report:
    """The report in one file; ReportError when it is not one."""
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ReportError("This file is too large to be a report.")
        data = path.read_bytes()
    except OSError:
        raise ReportError("This file could not be opened.") from None
    return report_from_bytes(data)


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def report_dict(report: Report, glossary: Glossary) -> dict[str, Any]:
    """The report with its glossary words (term, words matched, first sentence of the explanation)."""
    out = report.as_dict()
    out["terms"] = [
        {
            "id": hit.concept.id,
            "term": hit.concept.term,
            "matched": hit.matched,
            "explanation": first_sentence(hit.concept.explanation),
        }
        for hit in glossary.find_terms(report.text)
    ]
    return out


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when there is no sentence end)."""
    match = _FIRST_SENTENCE.match(text.strip())
    return match.group(1) if match else text.strip()


def _as_text(item: dict[str, Any]) -> str:
    lines = [item["title"], "", item["text"] or "(This report has no text.)"]
    if item["truncated"]:
        lines.append("(The report is very long; only the start was read.)")
    if item["terms"]:
        lines += ["", "Words from the glossary in this report:"]
        lines += [f"  - {t['term']} ({t['matched']}): {t['explanation']}" for t in item["terms"]]
        lines.append("Use 'lightbox explain WORD' for more about any of them.")
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print each report's text and the glossary words it contains."""
    del settings
    path = Path(args.path)
    if not path.exists():
        raise CommandError(f"{args.path} does not exist.")
    glossary = glossary_or_error()
    with quiet_pydicom():
        return _run(args, path, glossary)


def _run(args: argparse.Namespace, path: Path, glossary: Glossary) -> int:
    if path.is_file():
        try:
            item = report_dict(read_report(path), glossary)
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        print(json.dumps(item, ensure_ascii=False, indent=2) if args.json else _as_text(item))
        return 0
    items = []
    for file in dicom_files(path):
        # In a study folder only DICOM objects and files named as reports count; notes and
        # indexes lying beside the images are not reports.
        try:
            if _looks_like_dicom(file):
                # Headers only: an image's pixels are never read just to learn it is not a report.
                ds = dcmread(file, stop_before_pixels=True)
                if is_report(ds):
                    items.append(report_dict(report_from_dataset(ds), glossary))
            elif file.suffix.lower() in REPORT_SUFFIXES:
                items.append(report_dict(read_report(file), glossary))
        except (ReportError, InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
            continue  # a damaged file in a study folder is passed over
    if not items:
        raise CommandError(f"no report (DICOM SR, PDF or text) was found in {args.path}.")
    if args.json:
        print(json.dumps({"reports": items}, ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(_as_text(i) for i in items))
    return 0
