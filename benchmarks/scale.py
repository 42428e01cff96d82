"""Past one machine: replies per second for 1, 2 and 4 webhook workers, and "latest MR" at 100,000 patients.

Run: ``.venv/bin/python benchmarks/scale.py [--workers 1 2 4] [--users 200] [--messages 3]
[--patients 100000] [--instances 1000000] [--lookups 2000] [--skip-throughput] [--skip-latest]``

Starts a throw-away PostgreSQL (tests/services.py) for everything.

Throughput: for each worker count, real ``lightbox run --webhook`` processes on one fresh database behind a
round-robin balancer (tests/scale/cluster.py); the Bot API sandbox delivers ``--users`` x ``--messages``
``/explain`` commands through its webhook delivery (one POST at a time, as Telegram does with
``max_connections=1``) and the clock stops when every reply has arrived. Each update goes through the whole
path: webhook, inbox row, chat lease, persistence refresh and write, handler, reply, done mark. Replies per
second and the ratio to one worker are printed. Telegram's per-chat pace (about one message a second per
chat, kept by the bot) bounds one chat, so the load is spread over many chats.

Latest MR: bulk-loads ``--patients`` patients with about three studies each (MR, CT, CR, US mixed), one
series per study, ``--instances`` instances in all, with COPY; then times ``store.queries.latest_study
(modality="MR")`` for ``--lookups`` random patients: median, p95, max. Target (issue 11): median <= 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.sandbox import BotApiSandbox, TelegramDriver  # noqa: E402
from store.db import make_engine, session_factory, upgrade  # noqa: E402
from store.queries import latest_study  # noqa: E402
from tests import services  # noqa: E402
from tests.scale.cluster import running_cluster  # noqa: E402

TERMS = ("FLAIR", "T1", "T2", "contrast", "CT", "MRI", "DWI", "sagittal", "axial", "gadolinium")


def new_database(server_url: str, name: str) -> str:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


# ---------------------------------------------------------------- throughput


async def replies_per_second(server_url: str, workers: int, users: int, messages: int, tmp: Path) -> float:
    url = new_database(server_url, f"bench_workers_{workers}")
    async with BotApiSandbox(webhook_retry_delay=0.1) as sandbox, \
            running_cluster(sandbox, url, tmp / f"data-{workers}", workers, lease_seconds=10):
        driver = TelegramDriver(sandbox, timeout=120)
        people = [driver.user(f"U{i}") for i in range(users)]
        # Warm up: one message per worker's first chats (imports, connection pools, glossary load).
        for person in people[: 2 * workers]:
            await person.command("explain", "MRI")
        await sandbox.world.wait_for(lambda: len(sandbox.calls("sendMessage", 200)) >= 2 * workers or None, 60)
        base = len(sandbox.calls("sendMessage", 200))
        total = users * messages
        started = time.perf_counter()
        for round_ in range(messages):
            for i, person in enumerate(people):
                await person.command("explain", TERMS[(i + round_) % len(TERMS)])
        await sandbox.world.wait_for(
            lambda: len(sandbox.calls("sendMessage", 200)) - base >= total or None, 600)
        elapsed = time.perf_counter() - started
        duplicates = len(sandbox.calls("sendMessage", 200)) - base - total
        print(f"  {workers} worker(s): {total} replies in {elapsed:.2f} s = {total / elapsed:.1f} replies/s"
              f" (extra replies: {duplicates})", flush=True)
        return total / elapsed


# ---------------------------------------------------------------- latest MR


MODALITIES = ("MR", "CT", "CR", "US")
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def bulk_load(url: str, patients: int, instances: int, seed: int = 11) -> tuple[int, int]:
    """COPY ``patients`` patients, ~3 studies each, one series per study, ``instances`` instances in all."""
    rng = random.Random(seed)
    engine = make_engine(url)
    now = datetime.now(UTC).isoformat()
    raw = engine.raw_connection()
    studies = 0
    try:
        cur = raw.cursor()
        with cur.copy("COPY patient (id, public_id, name, birth_date, sex, display_label, created_at) "
                      "FROM STDIN") as copy:
            for pid in range(1, patients + 1):
                copy.write_row((pid, f"{pid:032x}", "", "", "", "", now))
        study_rows: list[tuple[int, int, date, str]] = []
        for pid in range(1, patients + 1):
            for _ in range(rng.choice((1, 2, 3, 3, 4, 5))):
                studies += 1
                day = date(2010, 1, 1) + timedelta(days=rng.randrange(16 * 365))
                study_rows.append((studies, pid, day, rng.choice(MODALITIES)))
        with cur.copy("COPY study (id, public_id, patient_id, study_uid, study_date, study_time, description, "
                      "modalities, body_part, source, series_count, instance_count, created_at) FROM STDIN") as copy:
            for sid, pid, day, modality in study_rows:
                copy.write_row((sid, f"{sid:032x}", pid, f"1.2.3.{sid}", day, "", "", modality, "", "local", 1, 0,
                                now))
        with cur.copy("COPY study_modality (study_id, modality, patient_id, study_date) FROM STDIN") as copy:
            for sid, pid, day, modality in study_rows:
                copy.write_row((sid, modality, pid, day))
        with cur.copy("COPY series (id, public_id, study_id, series_uid, modality, description, body_part, plane, "
                      "contrast, instance_count, frame_count, created_at) FROM STDIN") as copy:
            for sid, _pid, _day, modality in study_rows:
                copy.write_row((sid, f"{sid:032x}", sid, f"1.2.3.{sid}.1", modality, "", "", "axial", "", 0, 0, now))
        with cur.copy("COPY instance (id, public_id, series_id, sop_instance_uid, sop_class_uid, instance_number, "
                      "number_of_frames, pixel_spacing, transfer_syntax_uid, size_bytes, content_hash, remote_url, "
                      "created_at) FROM STDIN") as copy:
            for iid in range(1, instances + 1):
                series_id = 1 + (iid - 1) * studies // instances
                copy.write_row((iid, f"{iid:032x}", series_id, f"1.2.3.{series_id}.1.{iid}", MR_STORAGE, iid, 1, "",
                                "", 0, "", "", now))
        for table in ("patient", "study", "series", "instance"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return studies, instances


def database_size(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        size = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    engine.dispose()
    return size


def time_latest_mr(url: str, patients: int, lookups: int) -> list[float]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    rng = random.Random(5)
    times: list[float] = []
    found = 0
    with sessions() as session:
        for _ in range(50):  # warm the connection and the plan cache
            latest_study(session, rng.randint(1, patients), modality="MR")
        for _ in range(lookups):
            pid = rng.randint(1, patients)
            started = time.perf_counter()
            study = latest_study(session, pid, modality="MR")
            times.append((time.perf_counter() - started) * 1000)
            found += study is not None
    engine.dispose()
    print(f"  {found} of {lookups} patients had an MR", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latest", action="store_true")
    args = parser.parse_args()
    if not services.find_postgres():
        print("PostgreSQL is not installed (apt-get install postgresql)", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="lightbox-scale-") as tmp_name:
        tmp = Path(tmp_name)
        with services.start_postgres(tmp / "pg") as server_url:
            if not args.skip_throughput:
                print(f"replies per second ({args.users} chats x {args.messages} messages, webhook via the sandbox):")
                rates = {n: asyncio.run(replies_per_second(server_url, n, args.users, args.messages, tmp))
                         for n in args.workers}
                one = rates.get(1) or next(iter(rates.values()))
                for n, rate in rates.items():
                    print(f"  {n} worker(s): {rate:.1f} replies/s, {rate / one:.2f} x one worker")
            if not args.skip_latest:
                url = new_database(server_url, "bench_latest")
                started = time.perf_counter()
                studies, instances = bulk_load(url, args.patients, args.instances)
                print(f"latest MR: loaded {args.patients} patients, {studies} studies, {instances} instances "
                      f"in {time.perf_counter() - started:.1f} s (COPY)")
                print(f"  database size: {database_size(url) / 2**20:.0f} MB (tables and indexes)")
                times = time_latest_mr(url, args.patients, args.lookups)
                times.sort()
                p95 = times[int(0.95 * (len(times) - 1))]
                print(f"  latest_study(modality='MR'): median {statistics.median(times):.2f} ms, p95 {p95:.2f} ms, "
                      f"max {times[-1]:.2f} ms (target: median <= 10 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
