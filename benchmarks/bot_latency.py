"""How fast "show my last MRI" is answered: update in, sendPhoto out, with a big store and a cold cache.

Builds a store of N patients x S studies (default 1,000 x 10 = 10,000 studies) whose rows point at a few
real files (pydicom's MR and CT test images, stored once: rows are what the queries feel), links one
chat per patient, then through the Bot API sandbox:

1. sequential: R requests (default 200), each from a different patient, so every preview is rendered
   cold (previews are cached per patient); prints median and p95 from the moment the update is handed
   to the sandbox to the moment the sandbox receives sendPhoto (includes the long-poll hand-over);
2. concurrent: C chats (default 50) talking at once; prints replies per second.

Targets (issue 7): median <= 150 ms, p95 <= 400 ms on a 2-core machine. A measurement, never a test.

    .venv/bin/python benchmarks/bot_latency.py [--patients 1000] [--studies 10] [--requests 200] [--chats 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom
from sqlalchemy import insert, select

from bot.app import build_application, build_services, running
from bot.sandbox import BotApiSandbox
from bot.settings import Settings
from imaging.geometry import plane_from_orientation
from imaging.samples import sample_file
from store.models import (
    ChatLink,
    Instance,
    Patient,
    PatientIdentifier,
    Series,
    Study,
    StudyModality,
    new_public_id,
)

MODALITIES = [("MR", "brain", "MR_small.dcm"), ("CT", "chest", "CT_small.dcm"), ("MR", "knee", "MR_small.dcm")]


def build_store(services, patients: int, studies: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Rows for ``patients`` x ``studies``; returns (patient row id, telegram user id) per patient."""
    stored = {}
    for _, _, name in MODALITIES:
        path = sample_file(name)
        obj = services.files.put(path.read_bytes())
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        stored[name] = (obj, ds)
    rng = random.Random(7)
    today = date(2026, 11, 28)
    users: list[tuple[int, int]] = []
    with services.sessions() as session, session.begin():
        for p in range(patients):
            patient = Patient(name=f"Bench^{p}", identifiers=[PatientIdentifier(issuer="bench", value=f"B{p:06d}")])
            session.add(patient)
            session.flush()
            user_id = 5_000_000 + p
            session.add(ChatLink(telegram_user_id=user_id, chat_id=user_id, patient_id=patient.id))
            users.append((patient.id, user_id))
            study_rows, series_rows, instance_rows, modality_rows = [], [], [], []
            for s in range(studies):
                modality, part, name = MODALITIES[(p + s) % len(MODALITIES)]
                obj, ds = stored[name]
                when = today - timedelta(days=rng.randint(0, 3650))
                study_uid = f"2.25.{p}.{s}.{rng.getrandbits(40)}"
                study_rows.append(
                    dict(
                        public_id=new_public_id(),
                        patient_id=patient.id,
                        study_uid=study_uid,
                        study_date=when,
                        description=f"{modality} {part}",
                        modalities=modality,
                        body_part=part,
                        series_count=1,
                        instance_count=1,
                    )
                )
            session.execute(insert(Study), study_rows)
            ids = dict(session.execute(select(Study.study_uid, Study.id).where(Study.patient_id == patient.id)).all())
            for row in study_rows:
                study_id = ids[row["study_uid"]]
                modality_rows.append(
                    dict(
                        study_id=study_id,
                        modality=row["modalities"],
                        patient_id=patient.id,
                        study_date=row["study_date"],
                    )
                )
                series_rows.append(
                    dict(
                        public_id=new_public_id(),
                        study_id=study_id,
                        series_uid=row["study_uid"] + ".1",
                        modality=row["modalities"],
                        series_number=1,
                        description=row["description"],
                        body_part=row["body_part"],
                        instance_count=1,
                        frame_count=1,
                        plane=plane_from_orientation(None),
                    )
                )
            session.execute(insert(StudyModality), modality_rows)
            session.execute(insert(Series), series_rows)
            series_ids = dict(
                session.execute(
                    select(Series.series_uid, Series.id).join(Study).where(Study.patient_id == patient.id)
                ).all()
            )
            for row in series_rows:
                name = "CT_small.dcm" if row["modality"] == "CT" else "MR_small.dcm"
                obj, ds = stored[name]
                instance_rows.append(
                    dict(
                        public_id=new_public_id(),
                        series_id=series_ids[row["series_uid"]],
                        sop_instance_uid=row["series_uid"] + ".1",
                        sop_class_uid=str(ds.SOPClassUID),
                        instance_number=1,
                        number_of_frames=1,
                        rows=int(ds.Rows),
                        columns=int(ds.Columns),
                        size_bytes=obj.size,
                        content_hash=obj.sha256,
                        storage_key=obj.key,
                    )
                )
            session.execute(insert(Instance), instance_rows)
    return users


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        services = build_services(settings)
        started = time.perf_counter()
        users = build_store(services, args.patients, args.studies)
        print(f"store: {args.patients} patients x {args.studies} studies in {time.perf_counter() - started:.1f} s")
        async with BotApiSandbox() as sandbox:
            application = build_application(
                services,
                sandbox.token,
                base_url=sandbox.base_url,
                base_file_url=sandbox.base_file_url,
                concurrent_updates=64,
            )
            async with running(application, timeout=1):
                for _, user_id in users[: args.requests + args.chats]:
                    sandbox.add_user(f"U{user_id}", user_id=user_id)
                latencies = []
                for _, user_id in users[: args.requests]:
                    before = len(sandbox.calls("sendPhoto"))
                    t0 = time.monotonic()
                    sandbox.user_message(user_id, text="show my last MRI")
                    while len(sandbox.calls("sendPhoto")) == before:
                        await asyncio.sleep(0.001)
                    latencies.append((sandbox.calls("sendPhoto")[-1].started - t0) * 1000)
                latencies.sort()
                p95 = latencies[int(0.95 * (len(latencies) - 1))]
                print(
                    f"sequential, cold cache: n={len(latencies)} median {statistics.median(latencies):.1f} ms, "
                    f"p95 {p95:.1f} ms (targets: median <= 150 ms, p95 <= 400 ms)"
                )
                # Concurrency: C chats ask at once, R rounds; the per-chat pace (1 message/s) bounds each chat.
                chats = users[args.requests : args.requests + args.chats] or users[: args.chats]
                before = len(sandbox.calls("sendPhoto"))
                t0 = time.monotonic()
                for _, user_id in chats:
                    sandbox.user_message(user_id, text="show my last MRI")
                while len(sandbox.calls("sendPhoto")) < before + len(chats):
                    await asyncio.sleep(0.005)
                elapsed = time.monotonic() - t0
                print(
                    f"concurrent: {len(chats)} chats at once answered in {elapsed:.2f} s "
                    f"({len(chats) / elapsed:.1f} replies/s)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chats", type=int, default=50)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
