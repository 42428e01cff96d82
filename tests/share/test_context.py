"""The viewer's hot path: the read-only link lookup and the image-view event writer."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from share.context import ViewerContext
from share.events import PendingView
from share.links import find_link, read_link, revoke_share
from store.db import transaction
from store.models import AccessEvent, Instance, Series, ShareLink
from tests.share.conftest import ShareWorld

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


def test_read_link_sees_what_find_link_sees_and_changes_nothing(world: ShareWorld) -> None:
    created = world.share(max_views=3)
    engine = world.sessions.kw["bind"]
    with engine.connect() as connection:
        fast = read_link(connection, created.token)
        assert read_link(connection, created.token + "x") is None
        assert read_link(connection, "") is None
    with world.sessions() as session:
        slow = find_link(session, created.token)
    assert fast is not None and slow is not None
    for column in ShareLink.__table__.columns.keys():
        assert getattr(fast, column) == getattr(slow, column), column
    fast.max_views = 99  # a detached copy: nothing is written back
    with transaction(world.sessions) as session:
        revoke_share(session, created.link.public_id, now=world.clock())
    with engine.connect() as connection:
        again = read_link(connection, created.token)
    assert again is not None and again.max_views == 3 and again.revoked_at is not None


def test_image_lookups_run_on_the_event_loop_only_for_a_local_database(world: ShareWorld, backend: str) -> None:
    ctx = ViewerContext(world.sessions, world.files, "http://x", b"k" * 32)
    assert ctx.reads == {"sqlite": "loop", "postgresql": "thread"}[backend]
    assert ViewerContext(world.sessions, world.files, "http://x", b"k" * 32, read_mode="thread").reads == "thread"


def _view(world: ShareWorld, link: ShareLink, k: int) -> PendingView:
    with world.sessions() as session:
        instance = session.scalars(select(Instance).join(Series).where(Series.study_id == link.study_id)).first()
        assert instance is not None
        return PendingView(world.patient_id, link.id, link.public_id, world.clock(), link.study_id,
                           instance.series_id, instance.id, f"frame {k}")


def _written(world: ShareWorld) -> int:
    with world.sessions() as session:
        return len(session.scalars(select(AccessEvent).where(AccessEvent.action == "share_view")).all())


async def test_a_due_flush_never_makes_the_request_wait_while_a_writer_runs(world: ShareWorld) -> None:
    link = world.share().link
    ctx = ViewerContext(world.sessions, world.files, "http://x", b"k" * 32)
    assert ctx.events is not None
    ctx.events.max_items = 2
    writer = asyncio.create_task(ctx.write_events())
    await asyncio.sleep(0)
    try:
        # A flush already running (held here) is what a slow database looks like to a request.
        assert ctx.events._flushing.acquire(timeout=5)
        try:
            for k in range(4):
                due = ctx.events.add(_view(world, link, k))
            assert due
            started = time.perf_counter()
            await asyncio.wait_for(ctx.events_due(), timeout=1)
            assert time.perf_counter() - started < 0.5
            assert _written(world) == 0
        finally:
            ctx.events._flushing.release()
        for _ in range(100):  # the writer task writes them soon after
            if _written(world) == 4:
                break
            await asyncio.sleep(0.05)
        assert _written(world) == 4 and len(ctx.events) == 0
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


async def test_without_a_writer_or_far_behind_the_request_writes_them_itself(world: ShareWorld) -> None:
    link = world.share().link
    ctx = ViewerContext(world.sessions, world.files, "http://x", b"k" * 32)
    assert ctx.events is not None
    ctx.events.max_items = 1
    ctx.events.add(_view(world, link, 0))
    await ctx.events_due()  # no writer task (the app's lifespan did not run)
    assert _written(world) == 1
    writer = asyncio.create_task(ctx.write_events())
    await asyncio.sleep(0)
    try:
        ctx.events.max_delay = 60  # the writer would not come round in time by itself
        for k in range(10):  # ten times max_items: back-pressure
            ctx.events.add(_view(world, link, k))
        await ctx.events_due()
        assert _written(world) == 11
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


def test_an_event_of_an_erased_image_is_dropped_not_retried_for_ever(world: ShareWorld) -> None:
    link = world.share().link
    ctx = ViewerContext(world.sessions, world.files, "http://x", b"k" * 32)
    assert ctx.events is not None
    good = _view(world, link, 1)
    ctx.events.add(good)
    ctx.events.add(PendingView(world.patient_id, link.id, link.public_id, world.clock(), link.study_id,
                               good.series_id, 10**9, "frame 2"))  # no such instance any more
    assert ctx.flush_events() == 1
    assert len(ctx.events) == 0 and _written(world) == 1


async def test_lookups_past_the_in_flight_limit_wait_in_arrival_order(world: ShareWorld) -> None:
    from share.ratelimit import FailureLimiter

    ctx = ViewerContext(world.sessions, world.files, "http://x", b"k" * 32, limiter=FailureLimiter(max_failures=1))
    served: list[int] = []
    assert await ctx._begin("10.0.0.9") == 0  # the one place this address may hold

    async def lookup(n: int) -> None:
        assert await ctx._begin("10.0.0.9") == 0
        served.append(n)
        await asyncio.sleep(0)
        ctx.limiter.finish("10.0.0.9")
        ctx._wake_next("10.0.0.9")

    waiting = []
    for n in range(5):
        waiting.append(asyncio.create_task(lookup(n)))
        await asyncio.sleep(0)  # each arrives after the one before
    ctx.limiter.finish("10.0.0.9")
    ctx._wake_next("10.0.0.9")
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
    assert served == [0, 1, 2, 3, 4]
    assert ctx._waiting == {}  # nothing left behind

