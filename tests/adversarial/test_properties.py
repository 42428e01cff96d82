"""Property tests: real DICOM files, mutated (bytes flipped, lengths changed, elements removed, cut short,
grown), fed to import and render. The only acceptable outcomes are a correct result or a typed error with a
message fit for a patient; a traceback, a half-stored file or a picture that is not a picture fails."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from imaging.errors import RenderError
from imaging.render import render
from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore
from store.importer import ImportProblem, ImportReport, import_bytes
from store.models import Instance
from tests.adversarial.conftest import sample_path

SOURCES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm",
           "emri_small.dcm", "US1_J2KR.dcm", "OBXXXX1A_rle.dcm", "rtdose_1frame.dcm", "SC_ybr_full_uncompressed.dcm"]
ORIGINALS = {name: Path(sample_path(name)).read_bytes() for name in SOURCES}
MAX_PIXELS = 8_000_000  # generous for these files; a mutated header claiming more is refused before allocating
EXAMPLES = int(os.environ.get("LIGHTBOX_PROPERTY_EXAMPLES", "40"))  # raise it for a deeper run


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[object, FileStore]]:
    with tempfile.TemporaryDirectory(prefix="lightbox-props-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'props.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
        yield session_factory(engine), FileStore(Path(tmp) / "dicom", cipher=None)
        engine.dispose()


@st.composite
def flipped(draw: st.DrawFn) -> bytes:
    data = bytearray(ORIGINALS[draw(st.sampled_from(SOURCES))])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def header_flipped(draw: st.DrawFn) -> bytes:
    """Flips in the first 2 KB, where lengths, VRs and the image's dimensions live."""
    data = bytearray(ORIGINALS[draw(st.sampled_from(SOURCES))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(128, min(2048, len(data) - 1)))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def resized(draw: st.DrawFn) -> bytes:
    data = ORIGINALS[draw(st.sampled_from(SOURCES))]
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=64))
    return data[:cut] + tail


@st.composite
def length_changed(draw: st.DrawFn) -> bytes:
    """One element's 2- or 4-byte length field rewritten (explicit VR little endian layouts)."""
    data = bytearray(ORIGINALS[draw(st.sampled_from(SOURCES))])
    at = draw(st.integers(132, len(data) - 8))
    width = draw(st.sampled_from([2, 4]))
    value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, len(data)]))
    data[at:at + width] = (value & (256**width - 1)).to_bytes(width, "little")
    return bytes(data)


@st.composite
def element_removed(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(SOURCES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(ORIGINALS[name]))
    tags = [elem.tag for elem in ds if elem.tag != 0x7FE00010]
    for tag in draw(st.lists(st.sampled_from(tags), min_size=1, max_size=4, unique=True)):
        del ds[tag]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


MUTATIONS = st.one_of(flipped(), header_flipped(), resized(), length_changed(), element_removed())


kept_aside: set[str] = set()


def check_import(store: tuple[object, FileStore], data: bytes) -> None:
    sessions, files = store
    try:
        report = import_bytes(sessions, files, data, filename="mutated.dcm")  # type: ignore[arg-type]
    except ImportProblem as exc:
        assert str(exc) and "Traceback" not in str(exc) and len(str(exc)) < 300
        return
    assert isinstance(report, ImportReport)
    for skipped in report.skipped:
        assert skipped.reason and len(skipped.reason) < 200
    with sessions() as session:  # type: ignore[operator]
        keys = set(session.scalars(select(Instance.storage_key)))
    kept_aside.update(c.storage_key for c in report.conflicts)
    # Whatever was filed is stored whole, byte for byte; nothing is stored without its row, except the
    # conflicts the importer reports as kept aside for review (a chat upload discards those).
    assert set(files.keys()) <= keys | kept_aside
    if report.instances_added:
        import hashlib

        key = hashlib.sha256(data).hexdigest()
        assert key in keys and files.read(key) == data


def check_render(data: bytes, tmp: Path) -> None:
    path = tmp / "mutated.dcm"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            picture = render(path, 0, max_pixels=MAX_PIXELS)
    except RenderError as exc:
        message = exc.patient_message
        assert message and len(message) < 200 and "Traceback" not in message
        return
    assert picture.pixels.dtype == np.uint8
    assert picture.pixels.ndim in (2, 3) and min(picture.pixels.shape[:2]) >= 1


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
@given(data=MUTATIONS)
def test_mutated_dicom_imports_or_is_refused_plainly(store: tuple[object, FileStore], data: bytes) -> None:
    check_import(store, data)


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
@given(data=MUTATIONS)
def test_mutated_dicom_renders_or_is_refused_plainly(data: bytes, tmp_path_factory: pytest.TempPathFactory
                                                     ) -> None:
    check_render(data, tmp_path_factory.mktemp("render", numbered=True))


def test_the_unmutated_sources_import_and_render(store: tuple[object, FileStore], tmp_path: Path) -> None:
    # The mutations start from files that work: a failure above is the mutation's doing.
    for name, data in ORIGINALS.items():
        check_render(data, tmp_path)
        picture = render(sample_path(name), 0)
        assert picture.pixels.std() > 0, name
