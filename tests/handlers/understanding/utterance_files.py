"""The utterance files the understanding tests read: our devset copy, ../shared's, and our extra set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
SHARED_DEVSET = Path(__file__).resolve().parents[4] / "shared" / "devset" / "utterances.jsonl"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def devset_paths() -> list[Path]:
    """The project's copy of the devset, and ../shared's when present (it may be newer)."""
    paths = [DATA / "devset_utterances.jsonl"]
    if SHARED_DEVSET.is_file():
        paths.append(SHARED_DEVSET)
    return paths
