"""Soak: 200 chats and 50 share-link viewers at once against one Lightbox process, for a bounded time.

The Lightbox process (a child: the bot Application polling the Bot API sandbox over loopback HTTP, and the
share viewer under uvicorn, in one event loop) serves real data: each chat's patient has a few studies
made from pydicom's MR and CT test files, imported through the importer. This process drives it:

- chats: each of ``--chats`` users sends a message, waits for the bot's answer, sends the next (closed
  loop), cycling through "show my last MRI" (a rendered photo), /studies and "what does FLAIR mean";
- viewers: each of ``--viewers`` HTTP clients opens its own share link, reads the manifest and then
  fetches the slices' pictures in a loop (the image cache warms, as with a real specialist).

It prints replies per second, latency percentiles for both, errors (target: zero lost replies, zero 5xx)
and the Lightbox process's memory (RSS) growth after warm-up (target: under 10%). A measurement, never a
test; ``--seconds`` is capped at 300.

    .venv/bin/python benchmarks/soak.py [--seconds 120] [--chats 200] [--viewers 50] [--warmup 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_SECONDS = 300
REPLY_TIMEOUT = 30.0
MESSAGES = ["show my last MRI", "/studies", "what does FLAIR mean"]
SECRET = b"soak-viewer-secret-key-32-bytes!"


# ---------------------------------------------------------------- the Lightbox process

def child(data_dir: Path, token: str, base_url: str, file_url: str, viewer_port: int) -> None:
    """Run the bot and the viewer in this process until killed."""
    import uvicorn

    from bot.app import build_application, build_services, running
    from bot.settings import Settings
    from share.web import create_app

    async def main() -> None:
        settings = Settings(data_dir=data_dir, public_url=f"http://127.0.0.1:{viewer_port}")
        services = build_services(settings, migrate=False)
        application = build_application(services, token, base_url=base_url, base_file_url=file_url,
                                        concurrent_updates=64)
        viewer = create_app(services.sessions, services.files, public_url=settings.public_url, secret_key=SECRET)
        server = uvicorn.Server(uvicorn.Config(viewer, host="127.0.0.1", port=viewer_port, log_level="warning",
                                               access_log=False, lifespan="on"))
        async with running(application, timeout=1):
            await server.serve()

    asyncio.run(main())


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- data

def build_data(data_dir: Path, chats: int, viewers: int) -> tuple[list[int], list[str]]:
    """Patients (one per chat, linked), imported from real files; a share link per viewer."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid
    from sqlalchemy import select

    from bot.app import build_services
    from bot.settings import Settings
    from share.links import create_share
    from store.importer import import_path
    from store.models import ChatLink, Patient, PatientIdentifier, Study

    services = build_services(Settings(data_dir=data_dir))
    folder = data_dir.parent / "incoming"
    folder.mkdir()
    sources = {name: pydicom.dcmread(str(get_testdata_file(name))) for name in ("MR_small.dcm", "CT_small.dcm")}
    for p in range(chats):
        for s, (name, modality, part, date) in enumerate([("MR_small.dcm", "MR", "BRAIN", "20260110"),
                                                          ("CT_small.dcm", "CT", "CHEST", "20250305")]):
            study_uid, series_uid = generate_uid(), generate_uid()
            for k in range(6 if modality == "MR" else 3):
                ds = sources[name].copy()
                ds.PatientID, ds.PatientName, ds.PatientBirthDate = f"SOAK{p:05d}", f"Soak^P{p}", "19700101"
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.SOPInstanceUID = generate_uid()
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.StudyDate, ds.Modality, ds.BodyPartExamined = date, modality, part
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
                ds.save_as(folder / f"{p:05d}-{s}-{k}.dcm", enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_path(services.sessions, services.files, folder)
    users, tokens = [], []
    with services.sessions() as session, session.begin():
        for p in range(chats):
            patient_id = session.scalars(select(PatientIdentifier.patient_id).where(
                PatientIdentifier.value == f"SOAK{p:05d}")).one()
            user_id = 7_000_000 + p
            session.add(ChatLink(telegram_user_id=user_id, chat_id=user_id, patient_id=patient_id))
            users.append(user_id)
            if p < viewers:
                patient = session.get(Patient, patient_id)
                study = session.scalars(select(Study).where(Study.patient_id == patient_id,
                                                            Study.modalities == "MR")).one()
                assert patient is not None
                tokens.append(create_share(session, patient=patient, study=study, hours=24,
                                           now=datetime.now(UTC)).token)
    return users, tokens


# ---------------------------------------------------------------- load

@dataclass
class Figures:
    chat_latencies: list[float] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    view_latencies: list[float] = field(default_factory=list)
    view_errors: dict[str, int] = field(default_factory=dict)
    rss: list[tuple[float, int]] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] if ordered else float("nan")


async def chat_loop(sandbox: Any, user_id: int, stop: float, figures: Figures) -> None:
    messages = sandbox.world.chat_messages  # chat id -> that chat's messages, in order
    n = user_id % len(MESSAGES)
    while time.monotonic() < stop:
        sent_at = time.monotonic()
        sandbox.user_message(user_id, text=MESSAGES[n % len(MESSAGES)])
        n += 1
        mine = messages[user_id]
        asked = len(mine)  # the user's message is the last one now
        while time.monotonic() - sent_at < REPLY_TIMEOUT and len(mine) == asked:
            await asyncio.sleep(0.005)
        if len(mine) == asked:
            figures.lost += 1
            continue
        figures.chat_latencies.append((time.monotonic() - sent_at) * 1000)
        await asyncio.sleep(0.25)  # a person reads before typing again; a second answer would show by now
        # Each of these messages gets exactly one answer (a card, or a text): more is a doubled reply.
        answers = [m for m in mine[asked:] if m.from_bot]
        figures.doubled += max(0, len(answers) - 1)


async def viewer_loop(base: str, token: str, stop: float, figures: Figures) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        try:
            page = await client.get(f"/s/{token}")
            manifest = (await client.get(f"/s/{token}/api/manifest")).json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            figures.view_errors[type(exc).__name__] = figures.view_errors.get(type(exc).__name__, 0) + 1
            return
        if page.status_code != 200:
            figures.view_errors[str(page.status_code)] = figures.view_errors.get(str(page.status_code), 0) + 1
            return
        study = manifest["studies"][0]
        urls = [f"/s/{token}/img/{study['uid']}/{series['uid']}/{item['sop']}/{item['frame']}"
                for series in study["series"] for item in series["slices"]]
        k = 0
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                response = await client.get(urls[k % len(urls)])
                key = None if response.status_code == 200 else str(response.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if key is not None:
                figures.view_errors[key] = figures.view_errors.get(key, 0) + 1
            else:
                figures.view_latencies.append((time.monotonic() - t0) * 1000)
            k += 1
            await asyncio.sleep(0.02)


async def sample_memory(pid: int, stop: float, figures: Figures, started: float) -> None:
    while time.monotonic() < stop:
        figures.rss.append((time.monotonic() - started, rss_bytes(pid)))
        await asyncio.sleep(1.0)


async def soak(args: argparse.Namespace) -> int:
    from bot.sandbox import BotApiSandbox
    from tests.services import free_port

    with tempfile.TemporaryDirectory(prefix="lightbox-soak-") as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        users, tokens = build_data(data_dir, args.chats, args.viewers)
        print(f"data: {len(users)} patients (2 studies each, imported), {len(tokens)} share links "
              f"in {time.perf_counter() - t0:.1f} s")
        viewer_port = free_port()
        async with BotApiSandbox() as sandbox:
            for user_id in users:
                sandbox.add_user(f"U{user_id}", user_id=user_id)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", str(data_dir), sandbox.token, sandbox.base_url,
                 sandbox.base_file_url, str(viewer_port)],
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
            try:
                import httpx

                base = f"http://127.0.0.1:{viewer_port}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(base + "/s/" + "x" * 40, timeout=2).status_code in (404, 429):
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        print("the Lightbox process did not start", file=sys.stderr)
                        return 1
                    await asyncio.sleep(0.2)
                figures = Figures()
                started = time.monotonic()
                stop = started + args.seconds
                await asyncio.gather(
                    sample_memory(proc.pid, stop, figures, started),
                    *(chat_loop(sandbox, user_id, stop, figures) for user_id in users),
                    *(viewer_loop(base, token, stop, figures) for token in tokens),
                )
                elapsed = time.monotonic() - started
                server_errors = len(sandbox.calls(status=500))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    report(args, figures, elapsed, server_errors)
    return 0


def report(args: argparse.Namespace, figures: Figures, elapsed: float, sandbox_errors: int) -> None:
    chats, views = figures.chat_latencies, figures.view_latencies
    print(f"soak: {args.chats} chats + {args.viewers} viewers for {elapsed:.0f} s against one Lightbox process")
    print(f"chat: {len(chats)} replies, {len(chats) / elapsed:.1f} replies/s; latency ms p50 "
          f"{percentile(chats, 0.5):.0f}, p95 {percentile(chats, 0.95):.0f}, p99 {percentile(chats, 0.99):.0f}, "
          f"max {max(chats, default=float('nan')):.0f}")
    print(f"chat errors: {figures.lost} lost replies (no answer in {REPLY_TIMEOUT:.0f} s), {figures.doubled} "
          f"doubled, {sandbox_errors} Bot API calls answered 500 (target: 0 lost, 0 doubled)")
    fivexx = sum(v for k, v in figures.view_errors.items() if k.isdigit() and k.startswith("5"))
    print(f"viewer: {len(views)} pictures, {len(views) / elapsed:.1f}/s; latency ms p50 {percentile(views, 0.5):.1f}, "
          f"p95 {percentile(views, 0.95):.1f}, p99 {percentile(views, 0.99):.1f}")
    print(f"viewer errors: {fivexx} 5xx, all: {figures.view_errors or 'none'} (target: 0 5xx)")
    samples = figures.rss
    if len(samples) >= 3:
        warm = next((rss for t, rss in samples if t >= elapsed * args.warmup), samples[-1][1])
        last = samples[-1][1]
        growth = (last - warm) / warm * 100 if warm else float("nan")
        print(f"memory: RSS {warm / 2**20:.0f} MiB after warm-up ({args.warmup:.0%} of the run), "
              f"{last / 2**20:.0f} MiB at the end, growth {growth:+.1f}% (target: under 10%)")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        data_dir, token, base_url, file_url, port = sys.argv[2:7]
        child(Path(data_dir), token, base_url, file_url, int(port))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help=f"how long to run (at most {MAX_SECONDS})")
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=0.25, help="share of the run counted as warm-up")
    args = parser.parse_args()
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be between 0 and {MAX_SECONDS}")
    if args.viewers > args.chats:
        parser.error("--viewers cannot exceed --chats (each viewer opens a link of one chat's patient)")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
