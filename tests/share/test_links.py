"""Finding a patient's links by the person and the scan they name ("stop the link for Dr Lee")."""

from __future__ import annotations

import pytest

from share.links import find_shares, recipient_matches
from tests.share.conftest import ShareWorld


@pytest.mark.parametrize(
    ("asked", "label", "same"),
    [
        ("dr lee", "Dr. Lee", True),
        ("doctor lee", "Dr. Lee", True),
        ("Lee", "Dr. Jane Lee", True),
        ("my physio", "my physio", True),
        ("доктору Иванову", "доктору Иванову", True),
        ("доктора Иванова", "доктору Иванову", True),  # the same man in another case
        ("Петрову", "доктору Иванову", False),
        ("Dr. Müller", "dr muller", True),
        ("dr lee", "Dr. Kim", False),
        ("dr", "Dr. Lee", False),  # a title alone names nobody
        ("dr lee", "", False),
    ],
)
def test_recipient_matches(asked: str, label: str, same: bool) -> None:
    assert recipient_matches(asked, label) is same


def test_find_shares_by_person_and_by_scan(world: ShareWorld) -> None:
    lee = world.share(recipient_label="Dr. Lee").link
    kim = world.share(recipient_label="Dr. Kim").link
    with world.sessions() as session:
        assert [s.id for s in find_shares(session, world.patient_id, recipient="dr lee", now=world.clock())] == [lee.id]
        by_scan = find_shares(session, world.patient_id, modality="CT", body_part="head", now=world.clock())
        assert {s.id for s in by_scan} == {lee.id, kim.id}
        assert find_shares(session, world.patient_id, modality="MG", now=world.clock()) == []
        assert find_shares(session, world.patient_id + 1, recipient="dr lee", now=world.clock()) == []
