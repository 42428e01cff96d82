"""``lightbox share create|list|revoke`` and ``lightbox serve`` as an operator runs them, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from tests.services import free_port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dicom_folder: dict[str, object]) -> dict[str, str]:
    data = tmp_path / "data"
    port = free_port()
    values = {
        "LIGHTBOX_DATA_DIR": str(data),
        "LIGHTBOX_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LIGHTBOX_LOG_LEVEL": "WARNING",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIGHTBOX_DATABASE_URL", raising=False)
    monkeypatch.delenv("LIGHTBOX_ENCRYPTION_KEY", raising=False)
    assert main(["import", str(dicom_folder["root"]), "--json"]) == 0
    return {**values, "port": str(port)}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_create_list_revoke(env: dict[str, str], dicom_folder: dict[str, object],
                            capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    status, out, _ = cli(capsys, "share", "create", "--patient-id", "P1", "--study", str(dicom_folder["main"]),
                         "--hours", "5", "--code", "--max-views", "3", "--recipient", "Dr. Lee", "--json")
    assert status == 0
    made = json.loads(out)
    assert made["url"].startswith(env["LIGHTBOX_PUBLIC_URL"] + "/s/")
    assert len(made["access_code"]) == 6 and made["access_code"].isdigit()
    expires = datetime.fromisoformat(made["expires_at"])
    assert 4.9 * 3600 < (expires - datetime.now(expires.tzinfo)).total_seconds() <= 5 * 3600

    status, out, _ = cli(capsys, "share", "list", "--patient-id", "P1", "--json")
    rows = json.loads(out)
    assert status == 0 and [r["id"] for r in rows] == [made["id"]]
    assert rows[0]["state"] == "ok" and rows[0]["max_views"] == 3 and rows[0]["access_code"] is True
    assert made["url"].rsplit("/", 1)[1] not in out  # the token is never listed

    status, out, _ = cli(capsys, "share", "revoke", made["id"])
    assert status == 0 and "revoked" in out
    status, out, _ = cli(capsys, "share", "list", "--patient-id", "P1", "--json")
    assert json.loads(out)[0]["state"] == "revoked"


def test_friendly_errors(env: dict[str, str], dicom_folder: dict[str, object],
                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    cases = [
        (("share", "create", "--patient-id", "NOPE", "--study", str(dicom_folder["main"])), "no patient"),
        (("share", "create", "--patient-id", "P1", "--study", str(dicom_folder["stranger"])), "no study"),
        (("share", "create", "--patient-id", "P1", "--study", str(dicom_folder["main"]), "--hours", "1000"),
         "30 days"),
        (("share", "revoke", "0" * 32), "no share link"),
    ]
    for argv, words in cases:
        status, _out, err = cli(capsys, *argv)
        assert status == 1, argv
        assert words in err and "Traceback" not in err


def test_serve_runs_the_viewer(env: dict[str, str], dicom_folder: dict[str, object],
                               capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    status, out, _ = cli(capsys, "share", "create", "--patient-id", "P1", "--study", str(dicom_folder["main"]),
                         "--json")
    assert status == 0
    made = json.loads(out)
    environment = {**os.environ, **{k: v for k, v in env.items() if k.startswith("LIGHTBOX_")}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", env["port"]],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(made["url"], timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert page.status_code == 200 and "Doe" not in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.cookies.get("lb_view")
        manifest = httpx.get(made["url"] + "/api/manifest", cookies=page.cookies, timeout=5).json()
        assert manifest["studies"][0]["uid"] == dicom_folder["main"]
        cli(capsys, "share", "revoke", made["id"])
        assert httpx.get(made["url"], timeout=5).status_code == 410
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    token = made["url"].rsplit("/", 1)[1]
    assert token.encode() not in err  # never logged
