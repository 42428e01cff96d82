"""Link codes: deep-link safe, hashed, single use, expiring; one Telegram user links to one patient."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store import linking
from store.models import ChatLink, LinkCode, Patient, PatientIdentifier

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _patient(sessions: sessionmaker[Session], pid: str) -> int:
    with sessions() as s, s.begin():
        return linking.find_or_create_patient_by_identifier(s, pid).id


def test_code_fits_telegram_deep_links_and_only_its_hash_is_stored(sessions: sessionmaker[Session]) -> None:
    ann = _patient(sessions, "ANN")
    codes = []
    with sessions() as s, s.begin():
        for _ in range(20):
            codes.append(linking.create_link_code(s, ann, now=NOW))
    assert len(set(codes)) == 20
    for code in codes:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", code)
        # At least 128 bits: 6 bits per base64url character.
        assert len(code) * 6 >= 128
    with sessions() as s:
        rows = s.scalars(select(LinkCode)).all()
        stored = {row.code_hash for row in rows}
        assert stored == {hashlib.sha256(c.encode()).hexdigest() for c in codes}
        assert all(code not in stored for code in codes)
        assert all(row.expires_at == NOW + timedelta(hours=24) for row in rows)
    assert linking.deep_link("@LightboxBot", codes[0]) == f"https://t.me/LightboxBot?start={codes[0]}"


def test_redeem_links_once(sessions: sessionmaker[Session]) -> None:
    ann = _patient(sessions, "ANN")
    with sessions() as s, s.begin():
        code = linking.create_link_code(s, ann, now=NOW)
    with sessions() as s, s.begin():
        link = linking.redeem_link_code(s, code, telegram_user_id=1001, chat_id=5001, now=NOW + timedelta(hours=1))
        assert (link.patient_id, link.chat_id) == (ann, 5001)
    with sessions() as s:
        patient = linking.patient_for_chat(s, 1001)
        assert patient is not None and patient.id == ann
        assert linking.patient_for_chat(s, 9999) is None
        assert s.scalars(select(LinkCode)).one().used_at == NOW + timedelta(hours=1)
    with sessions() as s, s.begin(), pytest.raises(linking.UsedLinkCode) as used:
        linking.redeem_link_code(s, code, telegram_user_id=2002, chat_id=6002, now=NOW + timedelta(hours=2))
    assert "already used" in used.value.message
    with sessions() as s:
        assert linking.patient_for_chat(s, 2002) is None


def test_expired_unknown_and_malformed_codes(sessions: sessionmaker[Session]) -> None:
    ann = _patient(sessions, "ANN")
    with sessions() as s, s.begin():
        code = linking.create_link_code(s, ann, ttl=timedelta(minutes=30), now=NOW)
    with sessions() as s, s.begin(), pytest.raises(linking.ExpiredLinkCode) as expired:
        linking.redeem_link_code(s, code, 1001, 5001, now=NOW + timedelta(minutes=30))
    assert "expired" in expired.value.message
    for bad in ("", "x" * 65, "has space", "../../etc", code[:-1], code + "A", "ü" * 10):
        with sessions() as s, s.begin(), pytest.raises(linking.UnknownLinkCode) as unknown:
            linking.redeem_link_code(s, bad, 1001, 5001, now=NOW)
        assert unknown.value.message
    with sessions() as s:
        assert s.scalars(select(ChatLink)).all() == []
    with sessions() as s, s.begin(), pytest.raises(linking.UnknownPatient):
        linking.create_link_code(s, 987654, now=NOW)
    with sessions() as s, s.begin(), pytest.raises(ValueError):
        linking.create_link_code(s, ann, ttl=timedelta(0), now=NOW)


def test_relinking_moves_the_user_to_the_new_patient(sessions: sessionmaker[Session]) -> None:
    ann = _patient(sessions, "ANN")
    bob = _patient(sessions, "BOB")
    with sessions() as s, s.begin():
        ann_code = linking.create_link_code(s, ann, now=NOW)
        bob_code = linking.create_link_code(s, bob, now=NOW)
    with sessions() as s, s.begin():
        linking.redeem_link_code(s, ann_code, 1001, 5001, now=NOW)
    with sessions() as s, s.begin():
        linking.redeem_link_code(s, bob_code, 1001, 5002, now=NOW)
    with sessions() as s:
        links = s.scalars(select(ChatLink)).all()
        assert [(lk.telegram_user_id, lk.patient_id, lk.chat_id) for lk in links] == [(1001, bob, 5002)]
        assert linking.patient_for_chat(s, 1001).id == bob  # type: ignore[union-attr]
    with sessions() as s, s.begin():
        assert linking.unlink_chat(s, 1001) is True
        assert linking.unlink_chat(s, 1001) is False
    with sessions() as s:
        assert linking.patient_for_chat(s, 1001) is None


def test_two_redeems_racing_for_one_code_link_one_user(sessions: sessionmaker[Session]) -> None:
    ann = _patient(sessions, "ANN")
    with sessions() as s, s.begin():
        code = linking.create_link_code(s, ann, now=NOW)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def redeem(user: int) -> None:
        barrier.wait()
        try:
            with sessions() as s, s.begin():
                linking.redeem_link_code(s, code, user, user, now=NOW)
            outcomes.append("linked")
        except linking.UsedLinkCode:
            outcomes.append("used")
        except Exception as exc:  # a lock timeout on SQLite would show up here
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=redeem, args=(3000 + i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["linked", "used", "used", "used"]
    with sessions() as s:
        assert len(s.scalars(select(ChatLink)).all()) == 1


def test_find_or_create_patient_by_identifier(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        first = linking.find_or_create_patient_by_identifier(s, "P-1")
        again = linking.find_or_create_patient_by_identifier(s, " P-1 ")
        other_issuer = linking.find_or_create_patient_by_identifier(s, "P-1", issuer="HOSP-A")
        assert first.id == again.id
        assert other_issuer.id != first.id
        assert linking.find_patient_by_identifier(s, "P-1", "HOSP-A").id == other_issuer.id  # type: ignore[union-attr]
        assert linking.find_patient_by_identifier(s, "P-2") is None
        with pytest.raises(linking.AmbiguousPatientId):
            linking.find_patient_by_identifier(s, "P-1")
        with pytest.raises(ValueError):
            linking.find_or_create_patient_by_identifier(s, "  ")
    with sessions() as s:
        assert len(s.scalars(select(Patient)).all()) == 2
        assert len(s.scalars(select(PatientIdentifier)).all()) == 2
