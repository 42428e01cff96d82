"""``lightbox understand``: prints the devset's JSON shape; bad dates are one friendly line."""

from __future__ import annotations

import json

import pytest

from bot.cli import main


def test_prints_intent_and_slots(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["understand", "share my last MRI with my neurologist for 48 hours", "--today", "2026-11-28"])
    assert status == 0
    assert json.loads(capsys.readouterr().out) == {
        "intent": "share",
        "slots": {"modality": "MR", "which": "latest", "duration_hours": 48, "recipient": "my neurologist"},
    }


def test_relative_dates_use_today(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["understand", "ultrasound from two months ago", "--today", "2026-11-28"]) == 0
    assert json.loads(capsys.readouterr().out)["slots"]["which"] == {"date": "2026-09"}


def test_details_add_reason_and_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["understand", "--details", "share it for minus two days"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] == ["duration_not_positive"]
    assert out["slots"] == {"duration_hours": -48}


def test_bad_today_is_a_friendly_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["understand", "show my mri", "--today", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "--today must be a date" in err
    assert "Traceback" not in err
