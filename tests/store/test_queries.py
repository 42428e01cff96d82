"""Queries: the right study at once, and never another patient's (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from store import queries
from store.db import make_engine
from store.models import Instance, Patient, PatientIdentifier, Series, Study, StudyModality

_uids = itertools.count(1)


def add_patient(s: Session, pid: str) -> Patient:
    patient = Patient(name="Test^Patient", identifiers=[PatientIdentifier(issuer="", value=pid)])
    s.add(patient)
    s.flush()
    return patient


def add_study(
    s: Session,
    patient: Patient,
    when: date | None,
    modalities: str,
    *,
    body_part: str = "",
    time: str = "",
    description: str = "",
    series_body_parts: tuple[str, ...] = (),
) -> Study:
    n = next(_uids)
    codes = sorted(set(modalities.split("\\")))
    study = Study(
        patient_id=patient.id,
        study_uid=f"1.2.826.0.1.{n}",
        study_date=when,
        study_time=time,
        modalities="\\".join(codes),
        body_part=body_part,
        description=description,
    )
    for i, code in enumerate(codes):
        study.series.append(
            Series(
                series_uid=f"1.2.826.0.1.{n}.{i}",
                modality=code,
                series_number=i + 1,
                body_part=series_body_parts[i] if i < len(series_body_parts) else body_part,
            )
        )
        study.modality_rows.append(StudyModality(modality=code, patient_id=patient.id, study_date=when))
    study.series_count = len(codes)
    s.add(study)
    s.flush()
    return study


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Two patients; Ann has a history of MR, CT, X-ray and ultrasound; Bob has a newer MR."""
    ids: dict[str, int] = {}
    with sessions() as s, s.begin():
        ann = add_patient(s, "ANN")
        bob = add_patient(s, "BOB")
        ids["ann"], ids["bob"] = ann.id, bob.id
        ids["mr_knee_2021"] = add_study(s, ann, date(2021, 3, 1), "MR", body_part="knee").id
        ids["mr_brain_2023"] = add_study(s, ann, date(2023, 5, 10), "MR", body_part="head").id
        ids["mr_knee_2023"] = add_study(s, ann, date(2023, 5, 10), "MR", body_part="knee", time="101500").id
        ids["ct_2022"] = add_study(s, ann, date(2022, 7, 4), "CT\\PT", body_part="chest").id
        ids["cr_2020"] = add_study(s, ann, date(2020, 1, 2), "CR", body_part="knee").id
        ids["dx_2024"] = add_study(s, ann, date(2024, 2, 29), "DX", body_part="knee").id
        ids["rf_2019"] = add_study(s, ann, date(2019, 6, 6), "RF", body_part="abdomen").id
        ids["us_undated"] = add_study(s, ann, None, "US", body_part="abdomen").id
        ids["multi_2018"] = add_study(
            s, ann, date(2018, 8, 8), "CT", body_part="chest", series_body_parts=("abdomen",)
        ).id
        ids["bob_mr_2025"] = add_study(s, bob, date(2025, 1, 1), "MR", body_part="knee").id
    return ids


def test_latest_study_by_modality_stays_within_the_patient(
    sessions: sessionmaker[Session], world: dict[str, int]
) -> None:
    with sessions() as s:
        latest_mr = queries.latest_study(s, world["ann"], modality="MR")
        assert latest_mr is not None
        # Same day as the brain MR but later in the day; Bob's newer MR is not Ann's.
        assert latest_mr.id == world["mr_knee_2023"]
        assert queries.latest_study(s, world["bob"], modality="MR").id == world["bob_mr_2025"]  # type: ignore[union-attr]
        assert queries.latest_study(s, world["bob"], modality="CT") is None
        assert queries.latest_study(s, world["ann"]).id == world["dx_2024"]  # type: ignore[union-attr]
        assert queries.earliest_study(s, world["ann"], modality="MR").id == world["mr_knee_2021"]  # type: ignore[union-attr]
        assert queries.earliest_study(s, world["ann"]).id == world["multi_2018"]  # type: ignore[union-attr]
        # A second modality of a study counts (CT\PT is a PET study too).
        assert queries.latest_study(s, world["ann"], modality="pt").id == world["ct_2022"]  # type: ignore[union-attr]
        # An undated study is found when it is the only one of its kind.
        assert queries.latest_study(s, world["ann"], modality="US").id == world["us_undated"]  # type: ignore[union-attr]


def test_xray_covers_cr_dx_rf(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        xrays = queries.find_studies(s, world["ann"], modality="XR")
        assert [st.id for st in xrays] == [world["dx_2024"], world["cr_2020"], world["rf_2019"]]
        assert queries.latest_study(s, world["ann"], modality="x-ray").id == world["dx_2024"]  # type: ignore[union-attr]
        assert queries.earliest_study(s, world["ann"], modality="XR").id == world["rf_2019"]  # type: ignore[union-attr]
        assert queries.modality_codes("XR") == {"CR", "DX", "RF", "DR"}
        assert queries.modality_codes("mri") == {"MR"}
        with pytest.raises(queries.QueryError):
            queries.modality_codes("MR'; DROP TABLE study; --")


def test_study_with_two_xray_modalities_is_listed_once(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s, s.begin():
        ann = s.get(Patient, world["ann"])
        assert ann is not None
        both = add_study(s, ann, date(2024, 3, 1), "CR\\DX", body_part="chest")
    with sessions() as s:
        xrays = queries.find_studies(s, world["ann"], modality="XR")
        assert [st.id for st in xrays].count(both.id) == 1
        assert xrays[0].id == both.id


def test_body_part_filters_use_the_synonyms(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        knees = queries.find_studies(s, world["ann"], body_part="knee")
        expected = [world["dx_2024"], world["mr_knee_2023"], world["mr_knee_2021"], world["cr_2020"]]
        assert [st.id for st in knees] == expected
        knee_mr = queries.latest_study(s, world["ann"], modality="MR", body_part="knee")
        assert knee_mr is not None and knee_mr.id == world["mr_knee_2023"]
        # "brain" finds the study stored as "head".
        brain = queries.latest_study(s, world["ann"], modality="MR", body_part="brain")
        assert brain is not None and brain.id == world["mr_brain_2023"]
        # A series' body part counts: the 2018 chest CT also covered the abdomen.
        abdomen = queries.find_studies(s, world["ann"], body_part="abdomen", newest_first=False)
        assert [st.id for st in abdomen] == [world["multi_2018"], world["rf_2019"], world["us_undated"]]
        assert queries.find_studies(s, world["bob"], body_part="abdomen") == []


def test_dates_months_and_years(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        may_2023 = queries.find_studies(s, world["ann"], date="2023-05")
        assert {st.id for st in may_2023} == {world["mr_brain_2023"], world["mr_knee_2023"]}
        assert [st.id for st in queries.find_studies(s, world["ann"], date="2022")] == [world["ct_2022"]]
        leap = queries.find_studies(s, world["ann"], date=date(2024, 2, 29))
        assert [st.id for st in leap] == [world["dx_2024"]]
        assert [st.id for st in queries.find_studies(s, world["ann"], date="2024-02-29")] == [world["dx_2024"]]
        assert queries.find_studies(s, world["ann"], date="2024-03") == []
        assert queries.latest_study(s, world["ann"], modality="MR", on="2021").id == world["mr_knee_2021"]  # type: ignore[union-attr]
        assert queries.latest_study(s, world["ann"], modality="MR", on="2022") is None
        december = queries.date_range("2023-12")
        assert (december.start, december.end) == (date(2023, 12, 1), date(2024, 1, 1))
        for bad in ("2023-13", "23-05", "last tuesday", "2023-02-30"):
            with pytest.raises(queries.QueryError):
                queries.find_studies(s, world["ann"], date=bad)


def test_list_studies_newest_first_with_undated_last(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        newest = queries.list_studies(s, world["ann"])
        dates = [st.study_date for st in newest]
        assert dates[-1] is None
        dated = [d for d in dates if d is not None]
        assert dated == sorted(dated, reverse=True)
        assert len(newest) == 9
        oldest = queries.list_studies(s, world["ann"], newest_first=False)
        assert oldest[0].id == world["multi_2018"]
        assert oldest[-1].id == world["us_undated"]
        assert [st.id for st in queries.list_studies(s, world["ann"], limit=2, offset=1)] == [
            newest[1].id,
            newest[2].id,
        ]
        assert queries.count_studies(s, world["ann"]) == 9
        assert all(st.patient_id == world["bob"] for st in queries.list_studies(s, world["bob"]))


def test_previous_study_of_the_same_kind(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        knee_2023 = s.get(Study, world["mr_knee_2023"])
        assert knee_2023 is not None
        previous = queries.previous_study(s, world["ann"], knee_2023)
        assert previous is not None and previous.id == world["mr_knee_2021"]
        # Any modality of the same body part when asked for it: the X-ray of the knee before.
        dx = s.get(Study, world["dx_2024"])
        assert dx is not None
        assert queries.previous_study(s, world["ann"], dx).id == world["cr_2020"]  # type: ignore[union-attr]
        assert queries.previous_study(s, world["ann"], dx, modality="MR").id == world["mr_knee_2023"]  # type: ignore[union-attr]
        assert queries.previous_study(s, world["ann"], s.get(Study, world["mr_knee_2021"])) is None  # type: ignore[arg-type]
        # Someone else's study is never a starting point.
        bob_mr = s.get(Study, world["bob_mr_2025"])
        assert bob_mr is not None
        assert queries.previous_study(s, world["ann"], bob_mr) is None
        assert queries.previous_study(s, world["bob"], bob_mr) is None


def test_get_study_for_patient_refuses_other_patients(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s:
        bob_study = s.get(Study, world["bob_mr_2025"])
        assert bob_study is not None
        assert queries.get_study_for_patient(s, world["bob"], bob_study.public_id) is not None
        assert queries.get_study_for_patient(s, world["bob"], bob_study.study_uid) is not None
        assert queries.get_study_for_patient(s, world["ann"], bob_study.public_id) is None
        assert queries.get_study_for_patient(s, world["ann"], bob_study.study_uid) is None
        assert queries.get_study_for_patient(s, world["ann"], "%") is None
        assert queries.get_study_for_patient(s, world["ann"], "") is None
        assert queries.get_study_for_patient(s, world["ann"], "x" * 500) is None
        bob_series = queries.series_of_study(s, world["bob"], bob_study.id)
        assert len(bob_series) == 1
        assert queries.series_of_study(s, world["ann"], bob_study.id) == []
        assert queries.get_series_for_patient(s, world["ann"], bob_series[0].public_id) is None
        assert queries.get_series_for_patient(s, world["bob"], bob_series[0].series_uid) is not None


def _add_instances(s: Session, series: Series, specs: list[tuple[int | None, float | None]]) -> list[Instance]:
    out = []
    for number, location in specs:
        inst = Instance(
            series_id=series.id,
            sop_instance_uid=f"{series.series_uid}.{next(_uids)}",
            instance_number=number,
            slice_location=location,
        )
        s.add(inst)
        out.append(inst)
    s.flush()
    return out


def test_instances_in_slice_order(sessions: sessionmaker[Session], world: dict[str, int]) -> None:
    with sessions() as s, s.begin():
        ann_series = queries.series_of_study(s, world["ann"], world["mr_knee_2023"])[0]
        # Numbers run against the geometry: the position along the normal decides.
        placed = _add_instances(s, ann_series, [(1, 30.0), (2, -10.0), (3, 10.0), (4, 10.0), (5, 0.0)])
        ct_series = queries.series_of_study(s, world["ann"], world["ct_2022"])[0]
        # One instance without a position: Instance Number order for the whole series.
        numbered = _add_instances(s, ct_series, [(3, 1.0), (1, None), (None, 2.0), (2, 5.0)])
        ids = {
            "placed": [i.id for i in placed],
            "numbered": [i.id for i in numbered],
            "mr_series": ann_series.id,
            "ct_series": ct_series.id,
        }
    with sessions() as s:
        got = [i.id for i in queries.instances_of_series(s, world["ann"], ids["mr_series"])]
        p = ids["placed"]
        assert got == [p[1], p[4], p[2], p[3], p[0]]
        got = [i.id for i in queries.instances_of_series(s, world["ann"], ids["ct_series"])]
        n = ids["numbered"]
        assert got == [n[1], n[3], n[0], n[2]]
        assert queries.instances_of_series(s, world["bob"], ids["mr_series"]) == []
        inst = s.get(Instance, p[0])
        assert inst is not None
        assert queries.get_instance_for_patient(s, world["ann"], inst.public_id) is not None
        assert queries.get_instance_for_patient(s, world["bob"], inst.public_id) is None
        assert queries.get_instance_for_patient(s, world["bob"], inst.sop_instance_uid) is None


def test_latest_mr_uses_the_study_modality_index(db_url: str, world: dict[str, int]) -> None:
    engine = make_engine(db_url)
    with Session(engine) as s:
        from sqlalchemy import select

        stmt, date_column = queries._studies_select(world["ann"], modality="MR", body_part=None, when=None)
        ordered = queries._ordered(stmt.where(date_column.is_not(None)), date_column, newest_first=True).limit(1)
        compiled = ordered.compile(engine, compile_kwargs={"literal_binds": True})
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in s.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "ix_study_modality_lookup" in plan, plan
        else:
            s.execute(text("SET enable_seqscan = off"))
            plan = " ".join(str(row[0]) for row in s.execute(text(f"EXPLAIN {compiled}")))
            assert "ix_study_modality_lookup" in plan, plan
        assert s.scalars(select(Study).where(Study.id == world["mr_knee_2023"])).one() is not None
    engine.dispose()
