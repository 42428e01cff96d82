"""The viewer's link reader on PostgreSQL reads in one round trip, without a ping first: a connection the
server dropped fails the read, which is retried on a fresh one."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from share.web import create_app
from tests.share.conftest import ShareWorld

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


async def test_an_image_lookup_survives_a_dropped_database_connection(world: ShareWorld) -> None:
    app = create_app(world.sessions, world.files, public_url="http://testserver", secret_key=b"k" * 32,
                     clock=world.clock)
    ctx = app.state.viewer
    created = world.share()
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get(f"/s/{created.token}")).status_code == 200
        manifest = (await client.get(f"/s/{created.token}/api/manifest")).json()
        study = manifest["studies"][0]
        series = study["series"][0]
        url = f"/s/{created.token}/img/{study['uid']}/{series['uid']}/{series['slices'][0]['sop']}/0"
        assert (await client.get(url)).status_code == 200
        reader = ctx._link_reader()
        assert reader is not None
        with reader.connect() as connection:  # the pool's connections, as the next lookup will get them
            pid = connection.connection.dbapi_connection.info.backend_pid
        with world.sessions() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert (await client.get(url)).status_code == 200
