"""Several ``lightbox run --webhook`` worker processes on one database, behind a round-robin load balancer.

Used by tests/scale and benchmarks/scale.py. The Bot API sandbox (in the caller's event loop) delivers
webhook updates to the balancer, which forwards each POST to the next live worker in turn (a worker that
refuses connections is skipped, as a real balancer's health check would) and remembers who got which
update. The workers are real processes: killing one with SIGKILL is a real crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox import BotApiSandbox
from bot.server import WebServer
from tests.services import free_port

SECRET = "scale-test-secret_42"
HOOK_PATH = "/telegram/hook"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    """One ``lightbox run --webhook`` process."""

    index: int
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease released, no job finished."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """The running workers, the balancer's address and what it routed where."""

    workers: list[Worker]
    balancer_url: str
    data_dir: Path
    routed: list[tuple[int, int]] = field(default_factory=list)  # (update_id, worker index)
    # Send everything to this worker (while it lives) instead of taking turns: a sticky balancer.
    pinned: int | None = None

    @property
    def hook_url(self) -> str:
        return self.balancer_url + HOOK_PATH


def _balancer(cluster_ref: list[Cluster], client: httpx.AsyncClient) -> Starlette:
    turn = itertools.count()

    async def forward(request: Request) -> Response:
        cluster = cluster_ref[0]
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-telegram")}
        headers["content-type"] = "application/json"
        first = next(turn) if cluster.pinned is None else cluster.pinned
        for step in range(len(cluster.workers)):
            worker = cluster.workers[(first + step) % len(cluster.workers)]
            if not worker.alive:
                continue
            try:
                answer = await client.post(worker.url + HOOK_PATH, content=body, headers=headers)
            except httpx.TransportError:
                continue
            with contextlib.suppress(ValueError, KeyError):
                cluster.routed.append((int(json.loads(body)["update_id"]), worker.index))
            return Response(answer.content, status_code=answer.status_code)
        return Response("no worker", status_code=502)

    return Starlette(routes=[Route(HOOK_PATH, forward, methods=["POST"])])


def worker_env(sandbox: BotApiSandbox, database_url: str, data_dir: Path, *, lease_seconds: int,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update({
        "LIGHTBOX_DATABASE_URL": database_url,
        "LIGHTBOX_DATA_DIR": str(data_dir),
        "LIGHTBOX_BOT_TOKEN": sandbox.token,
        "LIGHTBOX_BOT_API_URL": sandbox.base_url,
        "LIGHTBOX_WEBHOOK_SECRET": SECRET,
        "LIGHTBOX_LEASE_SECONDS": str(lease_seconds),
        "LIGHTBOX_PUBLIC_URL": "http://127.0.0.1:9",
        "LIGHTBOX_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


async def _wait_ready(worker: Worker, client: httpx.AsyncClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive:
            raise RuntimeError(f"worker {worker.index} exited:\n{worker.output()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(worker.url + "/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker {worker.index} not ready in {timeout:.0f} s:\n{worker.output()[-3000:]}")


def start_worker(index: int, env: dict[str, str], hook_url: str, log_dir: Path) -> Worker:
    port = free_port()
    log = log_dir / f"worker-{index}.log"
    handle = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--webhook", hook_url, "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return Worker(index, port, proc, log)


@contextlib.asynccontextmanager
async def running_cluster(sandbox: BotApiSandbox, database_url: str, data_dir: Path, workers: int = 2, *,
                          lease_seconds: int = 3, extra_env: dict[str, str] | None = None,
                          start_timeout: float = 60.0) -> AsyncIterator[Cluster]:
    """``workers`` processes on ``database_url`` (already migrated) behind a balancer the sandbox calls."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ref: list[Cluster] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), trust_env=False,
                                 limits=httpx.Limits(max_connections=200)) as client:
        balancer = WebServer("127.0.0.1", 0)
        balancer.bind()
        async with balancer.serving(_balancer(ref, client)):
            env = worker_env(sandbox, database_url, data_dir, lease_seconds=lease_seconds, extra=extra_env)
            hook = balancer.url + HOOK_PATH
            procs = [start_worker(i, env, hook, data_dir) for i in range(workers)]
            cluster = Cluster(procs, balancer.url, data_dir)
            ref.append(cluster)
            try:
                await asyncio.gather(*(_wait_ready(w, client, start_timeout) for w in procs))
                deadline = time.monotonic() + start_timeout
                while sandbox.api.webhook.url != hook and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                yield cluster
            finally:
                for worker in procs:
                    if worker.alive:
                        worker.proc.send_signal(signal.SIGTERM)
                for worker in procs:
                    try:
                        await asyncio.to_thread(worker.proc.wait, 15)
                    except subprocess.TimeoutExpired:
                        worker.kill()
