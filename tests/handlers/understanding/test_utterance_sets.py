"""Accuracy on the devset (../shared's copy and ours) and on our own extra utterances in four languages."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from handlers.understanding import understand
from tests.handlers.understanding.utterance_files import DATA, devset_paths, load_jsonl


def score(path: Path) -> tuple[float, float, list[str]]:
    rows = load_jsonl(path)
    assert rows, f"{path} is empty"
    intents = slots = 0
    misses = []
    for row in rows:
        got = understand(row["text"], dt.date.fromisoformat(row["today"]))
        intents += got.intent == row["intent"]
        ok = got.intent == row["intent"] and got.slots == row["slots"]
        slots += ok
        if not ok:
            misses.append(f"{row['text'][:60]!r}: want {row['intent']} {row['slots']}, got {got.intent} {got.slots}")
    return intents / len(rows), slots / len(rows), misses


@pytest.mark.parametrize("path", devset_paths(), ids=lambda p: p.parent.name + "/" + p.name)
def test_devset_meets_the_issue_targets(path: Path) -> None:
    intent_accuracy, slot_accuracy, misses = score(path)
    assert intent_accuracy >= 0.95, misses
    assert slot_accuracy >= 0.90, misses


def test_extra_set_covers_four_languages_and_every_intent() -> None:
    rows = load_jsonl(DATA / "extra_utterances.jsonl")
    assert len(rows) >= 150
    languages = Counter(r["lang"] for r in rows)
    assert set(languages) == {"en", "de", "es", "ru"}
    assert min(languages.values()) >= 30
    assert {r["intent"] for r in rows} == {
        "show_study",
        "list_studies",
        "explain_term",
        "describe_current",
        "compare",
        "share",
        "list_shares",
        "revoke_share",
        "activity",
        "privacy",
        "forget_me",
        "help",
        "unknown",
    }
    devset_texts = {r["text"] for r in load_jsonl(DATA / "devset_utterances.jsonl")}
    assert not devset_texts & {r["text"] for r in rows}, "the extra set must use different wording"


@pytest.mark.parametrize("lang", ["en", "de", "es", "ru"])
def test_extra_set_meets_the_targets_in_each_language(lang: str, tmp_path: Path) -> None:
    rows = [r for r in load_jsonl(DATA / "extra_utterances.jsonl") if r["lang"] == lang]
    intents = sum(understand(r["text"], dt.date.fromisoformat(r["today"])).intent == r["intent"] for r in rows)
    exact = sum(
        understand(r["text"], dt.date.fromisoformat(r["today"])).as_json()
        == {"intent": r["intent"], "slots": r["slots"]}
        for r in rows
    )
    assert intents / len(rows) >= 0.95
    assert exact / len(rows) >= 0.90


def test_devset_copy_is_the_same_format_as_shared() -> None:
    ours = load_jsonl(DATA / "devset_utterances.jsonl")
    for row in ours:
        assert set(row) == {"text", "today", "intent", "slots"}
        assert set(row["slots"]) <= {"modality", "body_part", "which", "term", "duration_hours", "recipient", "all"}
