"""The access log: written per patient, read back newest first, never mixing patients."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store import audit
from store.models import AccessEvent, Patient, Study

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_record_and_read_recent_activity(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        ann, bob = Patient(), Patient()
        s.add_all([ann, bob])
        s.flush()
        study = Study(patient_id=ann.id, study_uid="1.2.3.4", study_date=date(2024, 1, 1), modalities="MR")
        s.add(study)
        s.flush()
        for minute in range(25):
            audit.record_access(
                s,
                ann.id,
                "chat",
                "17",
                "view",
                study_id=study.id,
                detail=f"frame {minute}",
                at=T0 + timedelta(minutes=minute),
            )
        audit.record_access(s, bob.id, "share", "abc123", "share_open", at=T0 + timedelta(hours=5))
        audit.record_access(s, ann.id, "share", "f" * 100, "download", detail="d" * 400, at=T0 + timedelta(hours=1))
        ids = (ann.id, bob.id, study.id)
    ann_id, bob_id, study_id = ids
    with sessions() as s:
        recent = audit.recent_activity(s, ann_id)
        assert len(recent) == 20
        assert recent[0].action == "download"
        assert len(recent[0].actor_ref) == audit.ACTOR_REF_MAX
        assert len(recent[0].detail) == audit.DETAIL_MAX
        assert [e.detail for e in recent[1:4]] == ["frame 24", "frame 23", "frame 22"]
        assert all(e.patient_id == ann_id for e in recent)
        assert recent[1].study_id == study_id
        assert [e.action for e in audit.recent_activity(s, bob_id)] == ["share_open"]
        shares = audit.recent_activity(s, ann_id, actor_kind="share")
        assert [e.action for e in shares] == ["download"]
        since = audit.recent_activity(s, ann_id, limit=100, since=T0 + timedelta(minutes=20))
        assert len(since) == 6
        assert audit.recent_activity(s, ann_id, limit=0) == []


def test_unknown_kinds_and_actions_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        ann = Patient()
        s.add(ann)
        s.flush()
        with pytest.raises(audit.AuditError):
            audit.record_access(s, ann.id, "hacker", "x", "view")
        with pytest.raises(audit.AuditError):
            audit.record_access(s, ann.id, "chat", "x", "peek")
        assert s.scalars(select(AccessEvent)).all() == []


def test_events_outlive_a_deleted_study(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        ann = Patient()
        s.add(ann)
        s.flush()
        study = Study(patient_id=ann.id, study_uid="1.2.3.5")
        s.add(study)
        s.flush()
        audit.record_access(s, ann.id, "chat", "1", "view", study_id=study.id)
        audit.record_access(s, ann.id, "chat", "1", "delete", detail="study")
        ann_id, study_id = ann.id, study.id
    with sessions() as s, s.begin():
        s.delete(s.get(Study, study_id))
    with sessions() as s:
        events = audit.recent_activity(s, ann_id)
        assert [e.action for e in events] == ["delete", "view"]
        assert all(e.study_id is None for e in events)


def test_many_events_in_one_statement_read_back_like_single_ones(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        ann = Patient()
        s.add(ann)
        s.flush()
        rows = [audit.access_row(ann.id, "share", "link1", "share_view", detail=f"frame {k}",
                                 at=T0 + timedelta(seconds=k)) for k in range(300)]
        assert audit.record_accesses(s, rows) == 300
        assert audit.record_accesses(s, []) == 0
        ann_id = ann.id
    with sessions() as s:
        recent = audit.recent_activity(s, ann_id, limit=3)
        assert [e.detail for e in recent] == ["frame 299", "frame 298", "frame 297"]
        assert recent[0].at == T0 + timedelta(seconds=299)
        assert len(s.scalars(select(AccessEvent)).all()) == 300
    with pytest.raises(audit.AuditError):
        audit.access_row(ann_id, "share", "x", "peek")
