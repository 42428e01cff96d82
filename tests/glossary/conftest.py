"""Fixtures for the glossary tests: the packaged glossary and the development term list."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from glossary.concepts import read_concepts
from glossary.lookup import Glossary

DATA = Path(__file__).resolve().parent / "data"
SHARED_TERMS = Path(__file__).resolve().parents[2].parent / "shared" / "devset" / "terms.tsv"


@pytest.fixture(scope="session")
def glossary() -> Glossary:
    """The packaged glossary, built from whatever term files exist (problems are tested in test_data)."""
    concepts, _problems = read_concepts()
    return Glossary(concepts)


def devset_rows() -> list[tuple[str, str, str]]:
    """(term, category, variant) rows of the copied terms.tsv, plus ../shared's when it is there."""
    rows: list[tuple[str, str, str]] = []
    for path in (DATA / "terms.tsv", SHARED_TERMS):
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                item = (row["term"].strip(), row["category"].strip(), row["variant"].strip())
                if item not in rows:
                    rows.append(item)
    return rows
