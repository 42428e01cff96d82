"""Every runtime dependency's licence is compatible with Lightbox's Apache-2.0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_dependencies_have_compatible_licences() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "licenses.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_refuses_gpl() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import licenses  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    assert not licenses.compatible("GNU General Public License v3 (GPLv3)")
    assert not licenses.compatible("GPL-3.0-only")
    assert licenses.compatible("LGPL-3.0-only")
    assert licenses.compatible("BSD-3-Clause")


def test_the_gpl_jpeg_plugin_is_not_installed() -> None:
    # pylibjpeg-libjpeg is GPL-3.0; Lightbox decodes JPEG with gdcm, Pillow and imagecodecs instead.
    assert importlib.util.find_spec("libjpeg") is None
