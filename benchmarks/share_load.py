"""Load on the share viewer's image endpoint: 50 concurrent clients on loopback, cold and cached.

Run: ``.venv/bin/python benchmarks/share_load.py [--clients 50] [--duration 10] [--slices 200] [--size 512]
[--database sqlite|postgresql]``

Builds a throw-away data folder (file store, and SQLite or a throw-away PostgreSQL server) holding a
``--slices``-slice 512 x 512 CT series synthesised from pydicom's CT_small.dcm, imported with the real
importer, and one share link. Serves the viewer with uvicorn in a separate process on 127.0.0.1 (one
worker), opens the link once for its viewing session, then drives ``GET /s/{token}/img/...`` with
``--clients`` concurrent keep-alive HTTP clients, each sending its next request as soon as the last is
answered (closed loop, no pause: harsher than people scrolling):

- cold: every request asks for a slice not rendered before (each slice once, at ``--size``);
- cached: for ``--duration`` seconds, random slices that are already in the render cache.

Each request still looks up the link, checks its state and writes an access event (the rules hold for
cached images too). Prints requests per second and p50 / p90 / p99 latency for both phases, then the
median time of the 404 (unknown token) and 410 (revoked token) pages, which should match. The server's
CPU time per request is printed too: it does not depend on what else the machine is doing.

Target (issue 8): cached p99 under 100 ms and at least 200 requests per second on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_data(folder: Path, slices: int, url: str = "") -> tuple[str, str, str, list[tuple[str, str, str]]]:
    """Data folder with one CT series, in the database at ``url`` (default: an SQLite file in ``folder``);
    returns (database url, token, a revoked link's token, [(study, series, sop)] in order)."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid
    from sqlalchemy import select

    from share.links import create_share, instances_in_order, revoke_share
    from store.db import make_engine, session_factory, transaction, upgrade
    from store.filestore import FileStore
    from store.importer import import_path
    from store.models import Patient, Series, Study

    source = folder / "source"
    source.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = np.kron(original.pixel_array, np.ones((4, 4), dtype=original.pixel_array.dtype))  # 512 x 512
    study_uid, series_uid = generate_uid(), generate_uid()
    for k in range(slices):
        ds = original.copy()
        ds.PatientID, ds.PatientName = "BENCH1", "Bench^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.Rows, ds.Columns = base.shape
        ds.PixelSpacing = [0.5, 0.5]
        ds.PixelData = np.roll(base, k, axis=0).tobytes()
        ds.save_as(source / f"{k:04d}.dcm", enforce_file_format=True)
    url = url or f"sqlite:///{folder / 'lightbox.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    import_path(sessions, FileStore(folder / "dicom"), source)
    with transaction(sessions) as session:
        study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
        patient = session.get(Patient, study.patient_id)
        assert patient is not None
        created = create_share(session, patient=patient, study=study)
        revoked = create_share(session, patient=patient, study=study)
        revoke_share(session, revoked.link.public_id)
        series = session.scalars(select(Series).where(Series.study_id == study.id)).one()
        order = [(study_uid, series_uid, i.sop_instance_uid) for i in instances_in_order(session, series)]
    engine.dispose()
    return url, created.token, revoked.token, order


def serve(folder: Path, url: str, port: int) -> None:
    """Run the viewer on ``folder`` (the server process)."""
    import uvicorn

    from share.web import create_app
    from store.db import make_engine, session_factory
    from store.filestore import FileStore

    app = create_app(session_factory(make_engine(url)), FileStore(folder / "dicom"),
                     public_url=f"http://127.0.0.1:{port}", secret_key=b"benchmark-secret-key-32-bytes!!!")
    # SHARE_LOAD_READS=loop|thread forces where image lookups run (unset: the app's own choice by
    # database; see ViewerContext.read_mode).
    if os.environ.get("SHARE_LOAD_READS"):
        app.state.viewer.read_mode = os.environ["SHARE_LOAD_READS"]
    # SHARE_LOAD_THREADS=N sets how many threads do database lookups.
    app.state.viewer.lookup_threads = int(os.environ.get("SHARE_LOAD_THREADS", app.state.viewer.lookup_threads))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, int]:
    """One keep-alive HTTP/1.1 GET on an open connection: (status, body length)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return status, len(body)


async def drive(base: str, token: str, urls: list[str], clients: int, duration: float | None) -> tuple[
        list[float], float, int]:
    """Send requests from ``clients`` concurrent keep-alive connections; each URL once (duration None) or
    random ones until time is up. A minimal HTTP/1.1 client, so the load generator's own CPU use (httpx
    costs about 4 ms a request) does not starve the server on a 2-core machine."""
    import httpx

    latencies: list[float] = []
    errors = 0
    page = httpx.get(f"{base}/s/{token}", timeout=30)
    page.raise_for_status()
    cookie = "; ".join(f"{k}={v}" for k, v in page.cookies.items())
    host, port = base.removeprefix("http://").split(":")
    queue = list(reversed(urls))
    stop_at = time.perf_counter() + duration if duration else None

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                if stop_at is None:
                    if not queue:
                        return
                    url = queue.pop()
                else:
                    if time.perf_counter() >= stop_at:
                        return
                    url = random.choice(urls)
                request = f"GET {url} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode()
                t0 = time.perf_counter()
                status, size = await _get(reader, writer, request)
                latencies.append(time.perf_counter() - t0)
                if status != 200 or not size:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, time.perf_counter() - started, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(name: str, latencies: list[float], elapsed: float, errors: int, server_cpu: float) -> None:
    print(f"{name:<7} requests {len(latencies):>6}  errors {errors:>3}  {len(latencies) / elapsed:8.1f} req/s  "
          f"p50 {percentile(latencies, 50) * 1000:7.1f} ms  p90 {percentile(latencies, 90) * 1000:7.1f} ms  "
          f"p99 {percentile(latencies, 99) * 1000:7.1f} ms  mean {statistics.fmean(latencies) * 1000:7.1f} ms  "
          f"server CPU {server_cpu / max(1, len(latencies)) * 1000:5.2f} ms/request")


def failure_timing(base: str, revoked: str, rounds: int = 40) -> None:
    """Median time of the 404 page (a token that never existed) and the 410 page (a revoked one),
    interleaved, one at a time, until the failure limiter cuts this address off: a prober must not be
    able to tell them apart by timing."""
    import secrets

    import httpx

    unknown: list[float] = []
    gone: list[float] = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in range(rounds):
            for token, bucket, status in ((secrets.token_urlsafe(24), unknown, 404), (revoked, gone, 410)):
                t0 = time.perf_counter()
                response = client.get(f"/s/{token}")
                bucket.append(time.perf_counter() - t0)
                if response.status_code == 429:
                    print(f"failure timing: rate limited after {n} rounds (as designed)")
                    break
                assert response.status_code == status, response.status_code
            else:
                continue
            break
    if unknown and gone:
        print(f"failure pages: unknown token (404) median {statistics.median(unknown) * 1000:6.1f} ms, "
              f"revoked token (410) median {statistics.median(gone) * 1000:6.1f} ms, n={len(gone)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the cached phase")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="longest side asked for")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql starts a throw-away server (Debian package postgresql)")
    parser.add_argument("--serve", nargs=3, metavar=("FOLDER", "URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), args.serve[1], int(args.serve[2]))
        return 0

    from tests import services

    with tempfile.TemporaryDirectory(prefix="share-load-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        url = ""
        if args.database == "postgresql":
            if not services.find_postgres():
                print("PostgreSQL is not installed (apt-get install postgresql)", file=sys.stderr)
                return 2
            url = stack.enter_context(services.start_postgres(folder / "pg"))
        t0 = time.perf_counter()
        url, token, revoked, order = build_data(folder, args.slices, url)
        print(f"data: {len(order)} slices of 512 x 512 imported in {time.perf_counter() - t0:.1f} s "
              f"({args.database}); {args.clients} clients, size {args.size}, {os.cpu_count()} CPUs")
        port = services.free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(folder), url, str(port)], cwd=ROOT)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(base + "/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print("the viewer did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            urls = [f"/s/{token}/img/{st}/{se}/{sop}/0?size={args.size}" for st, se, sop in order]
            for name, duration in (("cold", None), ("cached", args.duration)):
                cpu0, own0 = cpu_seconds(server.pid), cpu_seconds(os.getpid())
                results = asyncio.run(drive(base, token, urls, args.clients, duration))
                report(name, *results, cpu_seconds(server.pid) - cpu0)
                if name == "cached":
                    p99, rate = percentile(results[0], 99) * 1000, len(results[0]) / results[1]
                    verdict = "met" if p99 < 100 and rate >= 200 else "NOT met"
                    print(f"        target (p99 under 100 ms, at least 200 req/s): {verdict}")
                print(f"        load generator CPU {(cpu_seconds(os.getpid()) - own0) / len(results[0]) * 1000:5.2f} "
                      "ms/request")
            failure_timing(base, revoked)
        finally:
            server.terminate()
            server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
