"""Real services on loopback for tests and benchmarks: PostgreSQL, Orthanc + DICOMweb, Chromium, dcmtk.

Each ``start_*`` is a context manager that starts the service in a private working folder on a free
127.0.0.1 port, waits until it answers, yields how to reach it, and stops it afterwards. Each
``find_*`` says where the service's program is, or ``None`` when it is not installed; the test
fixtures turn ``None`` into a loud skip (or a failure under ``CI=true``).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


class ServiceError(RuntimeError):
    """A service is installed but would not start; the message says what it printed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with status {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers, even if with an error status
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise ServiceError(f"no answer from {url} within {timeout:.0f} s")


# ---------------------------------------------------------------- PostgreSQL


def find_postgres() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or ``None``."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    return None


def _as_postgres_user() -> list[str]:
    # initdb refuses to run as root; Debian's package brings a 'postgres' user.
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceError("running as root but there is no 'postgres' user to run the server") from exc
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def start_postgres(workdir: Path) -> Iterator[str]:
    """Start a throw-away PostgreSQL cluster; yield a SQLAlchemy URL (psycopg 3) of database ``lightbox``."""
    bindir = find_postgres()
    if bindir is None:
        raise ServiceError("PostgreSQL is not installed (Debian package 'postgresql')")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "pgdata"
    sock = workdir / "pgsock"
    sock.mkdir(exist_ok=True)
    prefix = _as_postgres_user()
    if prefix:
        shutil.chown(workdir, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(workdir, 0o755)
        # Parent folders must be traversable by the server's user.
        for parent in workdir.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
    port = free_port()
    log = workdir / "postgres.log"
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "lightbox", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        check=True, capture_output=True,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        check=True, capture_output=True,
    )
    try:
        subprocess.run(
            [*prefix, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lightbox", "lightbox"],
            check=True, capture_output=True,
        )
        yield f"postgresql+psycopg://lightbox@127.0.0.1:{port}/lightbox"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True, check=False,
        )


# ---------------------------------------------------------------- Orthanc


def find_orthanc() -> tuple[Path, Path] | None:
    """Orthanc's program and its DICOMweb plugin, or ``None`` when either is missing."""
    program = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    plugins = glob.glob("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*") + glob.glob(
        "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so*"
    )
    if not program or not plugins:
        return None
    return Path(program), Path(plugins[0])


@contextmanager
def start_orthanc(workdir: Path, *, username: str = "", password: str = "") -> Iterator[str]:
    """Start Orthanc with DICOMweb on a free loopback port; yield its base URL (DICOMweb under /dicom-web).

    With ``username`` and ``password`` HTTP basic authentication is required.
    """
    found = find_orthanc()
    if found is None:
        raise ServiceError("Orthanc with DICOMweb is not installed (Debian packages 'orthanc orthanc-dicomweb')")
    program, plugin = found
    workdir = Path(workdir)
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "LightboxTestPACS",
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        # Orthanc 1.10 cannot bind to loopback only; this refuses every host but this one.
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(username),
        "RegisteredUsers": {username: password} if username else {},
        "HttpTimeout": 60,
        "StableAge": 1,
        "ConcurrentJobs": 2,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(workdir / "orthanc.log", "wb")
    proc = subprocess.Popen([str(program), str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_http(f"{base}/system", timeout=60, proc=proc)
        except ServiceError as exc:
            raise ServiceError(f"Orthanc did not start: {exc}; log in {workdir / 'orthanc.log'}") from exc
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# ---------------------------------------------------------------- an app of ours


@contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise ServiceError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------- dcmtk and Chromium


def find_dcmj2pnm() -> str | None:
    """dcmtk's ``dcmj2pnm``, or ``None``."""
    return shutil.which("dcmj2pnm")


def find_chromium() -> str | None:
    """Debian's Chromium for Playwright, or ``None``."""
    return CHROMIUM if os.path.exists(CHROMIUM) else None
