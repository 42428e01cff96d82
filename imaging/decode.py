"""Open a DICOM object and decode one frame at a time.

:func:`open_image` reads the header only (everything before Pixel Data), checks the claimed
size against a pixel limit *before* anything is allocated, and remembers where the pixel data
value starts in the file. :func:`decode_frame` then reads and decodes just the frame asked for
with pydicom 3's decoders (pylibjpeg-openjpeg, python-gdcm, pydicom's RLE, Pillow), falling back
to imagecodecs (BSD) for what those cannot read (12-bit JPEG Extended, some JPEG-LS). A
1,000-frame object is never decoded whole, and for a file source never read whole either.

Leniencies, as dcmtk has them: a file with no Transfer Syntax in its meta header is read with
the encoding the parser found; a malformed Number of Frames (``"1A"``) uses its leading digits.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from imaging.errors import (
    CorruptImage,
    FrameOutOfRange,
    ImageTooLarge,
    NoPixelData,
    NotDicom,
    RenderError,
    TruncatedPixelData,
    UnsupportedCompression,
)

# What pydicom raises on garbled headers (a broken VR, a value of the wrong length, bad text).
GARBLED = (
    ValueError, TypeError, KeyError, IndexError, NotImplementedError, AttributeError, OverflowError,
    struct.error, BytesLengthException,
)

# Opened file headers remembered by open_image (see there).
HEADER_CACHE_SIZE = 16
HEADER_CACHE_FILE_BYTES = 2_000_000  # header bytes on disk, about 100 MB parsed
_CACHE: OrderedDict[tuple[str, int, int, int], DicomImage] = OrderedDict()
_CACHE_LOCK = threading.Lock()

# Same default as bot.settings.Settings.max_pixels (Rows x Columns x Frames x Samples).
DEFAULT_MAX_PIXELS = 400_000_000

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_IDENTITY_TAGS = ("SOPClassUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
_EXPLICIT_PIXEL_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}
_ITEM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD
# From this many pixels a JPEG 2000 frame is decoded with threads (small ones are fast anyway).
_THREADED_J2K_PIXELS = 1_000_000
_PILLOW_FIRST = {JPEGBaseline8Bit, JPEGExtended12Bit}
_IMAGECODECS_FIRST = {JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless}


@dataclass
class Frame:
    """One decoded frame: stored values and how to read them.

    ``pixels`` is (rows, columns) or (rows, columns, samples); ``photometric`` is the Photometric
    Interpretation of *these* values (a JPEG decoder may already have turned YBR into RGB).
    """

    pixels: np.ndarray
    photometric: str
    index: int


@dataclass
class DicomImage:
    """A DICOM object opened for rendering: its header and where its pixel data lives."""

    ds: Dataset
    transfer_syntax: UID
    frames: int
    rows: int
    columns: int
    samples: int
    path: Path | None = None
    pixel_keyword: str = "PixelData"
    pixel_vr: str | None = None
    # File offset of the pixel data value (file sources), or the in-memory value.
    pixel_offset: int | None = None
    pixel_bytes: bytes | None = field(default=None, repr=False)
    encapsulated: bool = False
    _options: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def photometric(self) -> str:
        """Photometric Interpretation (0028,0004) as stored, upper case."""
        return str(self.ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()

    @property
    def frame_pixels(self) -> int:
        """Pixels in one frame, samples counted."""
        return self.rows * self.columns * self.samples

    def decoding_options(self) -> dict[str, Any]:
        """Options for pydicom's decoders, with this module's leniencies applied (computed once)."""
        if self._options is None:
            ds = self.ds
            bits_allocated = lenient_int(ds, "BitsAllocated", 16)
            opts: dict[str, Any] = {
                "rows": self.rows,
                "columns": self.columns,
                "samples_per_pixel": self.samples,
                "number_of_frames": self.frames,
                "photometric_interpretation": self.photometric,
                "bits_allocated": bits_allocated,
                "bits_stored": lenient_int(ds, "BitsStored", bits_allocated),
                "pixel_representation": lenient_int(ds, "PixelRepresentation", 0),
                "transfer_syntax_uid": self.transfer_syntax,
                "pixel_keyword": self.pixel_keyword,
                "view_only": True,  # native data: no copy; the pipeline never writes to stored values
            }
            if self.samples > 1:
                opts["planar_configuration"] = lenient_int(ds, "PlanarConfiguration", 0)
            if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
                opts["extended_offsets"] = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
            if self.pixel_vr:
                opts["pixel_vr"] = self.pixel_vr
            self._options = opts
        return dict(self._options)


def lenient_int(ds: Dataset, keyword: str, default: int) -> int:
    """An integer attribute read leniently: ``"1A"`` gives 1, missing or empty gives ``default``."""
    elem = ds.get_item(keyword)
    if elem is None:
        return default
    try:
        value = ds[keyword].value
        if value is None or value == "":
            return default
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = value[0]
        return int(value)
    except Exception:  # noqa: S110 - any malformed value: read the raw text below
        pass
    raw = getattr(ds.get_item(keyword), "value", None)
    text = raw.decode("latin-1", "replace") if isinstance(raw, bytes) else str(raw)
    match = re.match(r"\s*\+?(\d+)", text)
    return int(match.group(1)) if match else default


def _transfer_syntax(ds: Dataset) -> UID:
    """Transfer Syntax UID (0002,0010), or the encoding the parser found when it is missing."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax:
        return UID(str(tsyntax).strip("\0 "))
    implicit, little = ds.original_encoding
    if implicit in (None, True) and little in (None, True):
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (None, True) else ExplicitVRBigEndian


def _looks_like_dicom(ds: Dataset, preamble: bytes | None) -> bool:
    if preamble is not None:
        return True
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        return True
    return any(keyword in ds for keyword in _IDENTITY_TAGS)


def _check_dimensions(ds: Dataset, max_pixels: int) -> tuple[int, int, int, int]:
    rows = lenient_int(ds, "Rows", 0)
    columns = lenient_int(ds, "Columns", 0)
    samples = lenient_int(ds, "SamplesPerPixel", 1) or 1
    frames = max(lenient_int(ds, "NumberOfFrames", 1), 1)
    if rows <= 0 or columns <= 0:
        raise CorruptImage("Rows or Columns missing or zero")
    bits = lenient_int(ds, "BitsAllocated", 16)
    if bits not in (1, 8, 16, 32, 64):
        raise CorruptImage(f"Bits Allocated {bits}")
    total = rows * columns * frames * samples
    if total > max_pixels:
        raise ImageTooLarge(total, max_pixels)
    return rows, columns, samples, frames


def _native_frame_bytes(image: DicomImage) -> float:
    bits = lenient_int(image.ds, "BitsAllocated", 16)
    pixels = image.rows * image.columns * image.samples
    if image.photometric == "YBR_FULL_422" and image.samples == 3:
        pixels = image.rows * image.columns * 2
    return pixels * bits / 8


def open_image(src: str | os.PathLike[str] | Dataset, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DicomImage:
    """Read a DICOM header (not its pixels) and check it can be rendered.

    Headers of files are remembered (the last :data:`HEADER_CACHE_SIZE`, at most
    :data:`HEADER_CACHE_FILE_BYTES` of them on disk, keyed by path, size and modification time):
    scrolling through an enhanced 1,000-frame object then parses its header, which takes ~100 ms,
    once. Treat ``DicomImage.ds`` as read-only.

    Raises :class:`NotDicom`, :class:`NoPixelData`, :class:`ImageTooLarge`,
    :class:`TruncatedPixelData`, :class:`UnsupportedCompression` or :class:`CorruptImage`.
    """
    if isinstance(src, Dataset):
        return _open_dataset(src, max_pixels)
    path = Path(src)
    key = _cache_key(path, max_pixels)
    if key is not None:
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None:
                _CACHE.move_to_end(key)
                return cached
    image = _open_path(path, max_pixels)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = image
            # Parsed headers take ~50 times their size on disk: bound the sum, keep the newest.
            while len(_CACHE) > 1 and (
                len(_CACHE) > HEADER_CACHE_SIZE
                or sum(i.pixel_offset or 0 for i in _CACHE.values()) > HEADER_CACHE_FILE_BYTES
            ):
                _CACHE.popitem(last=False)
    return image


def _cache_key(path: Path, max_pixels: int) -> tuple[str, int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None  # let the open below raise the real error
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, max_pixels)


def clear_header_cache() -> None:
    """Forget every remembered header (tests; or after rewriting files in place within a clock tick)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _open_path(path: Path, max_pixels: int) -> DicomImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with path.open("rb") as fh:
                return _open_file(fh, path, max_pixels)
    except RenderError:
        raise
    except IsADirectoryError:
        raise NotDicom("a folder, not a file") from None
    except FileNotFoundError:
        raise
    except (InvalidDicomError, EOFError, *GARBLED) as exc:
        raise NotDicom(f"{type(exc).__name__}") from None


def _open_file(fh: BinaryIO, path: Path, max_pixels: int) -> DicomImage:
    head = fh.read(132)
    preamble = head if len(head) == 132 and head[128:132] == b"DICM" else None
    fh.seek(0)
    try:
        ds = read_partial(fh, stop_when=lambda tag, vr, length: int(tag) in _PIXEL_TAGS, force=True)
    except (OSError, EOFError, *GARBLED) as exc:
        if preamble is None:
            raise NotDicom(type(exc).__name__) from None
        # A DICOM file whose header breaks off (or is garbled) before the pixels.
        if isinstance(exc, OSError | EOFError):
            raise TruncatedPixelData(f"header ends early: {type(exc).__name__}") from None
        raise CorruptImage(f"header unreadable: {type(exc).__name__}") from None
    element_start = fh.tell()
    if not _looks_like_dicom(ds, preamble):
        raise NotDicom("no DICOM preamble and no identifying attributes")
    tsyntax = _transfer_syntax(ds)
    if tsyntax == DeflatedExplicitVRLittleEndian:
        # The parser read a decompressed copy: offsets in it are not file offsets.
        fh.seek(0)
        full = pydicom.dcmread(fh, force=True)
        image = _open_dataset(full, max_pixels)
        image.path = path
        return image
    header = fh.read(12)
    if len(header) < 8:
        raise NoPixelData("no Pixel Data element")
    little = ds.original_encoding[1] is not False
    endian = "<" if little else ">"
    group, elem = struct.unpack(f"{endian}HH", header[:4])
    tag = group << 16 | elem
    if tag not in _PIXEL_TAGS:
        raise NoPixelData("no Pixel Data element")
    if header[4:6] in _EXPLICIT_PIXEL_VRS and len(header) == 12:
        vr: str | None = header[4:6].decode()
        (length,) = struct.unpack(f"{endian}L", header[8:12])
        value_offset = element_start + 12
    else:
        vr = None
        (length,) = struct.unpack(f"{endian}L", header[4:8])
        value_offset = element_start + 8
    rows, columns, samples, frames = _check_dimensions(ds, max_pixels)
    encapsulated = length == 0xFFFFFFFF
    if tsyntax not in AllTransferSyntaxes:
        raise UnsupportedCompression(f"unknown transfer syntax {tsyntax}")
    if encapsulated and not tsyntax.is_compressed:
        raise CorruptImage("encapsulated pixel data in a native transfer syntax")
    image = DicomImage(
        ds=ds,
        transfer_syntax=tsyntax,
        frames=frames,
        rows=rows,
        columns=columns,
        samples=samples,
        path=path,
        pixel_keyword=_PIXEL_TAGS[tag],
        pixel_vr=vr,
        pixel_offset=value_offset,
        encapsulated=encapsulated,
    )
    _check_decoder(image)
    file_size = path.stat().st_size
    if encapsulated:
        fh.seek(value_offset)
        _check_fragments(fh, file_size, endian)
    else:
        available = min(length, file_size - value_offset)
        needed = _native_frame_bytes(image) * frames
        if available + 1 < needed:
            raise TruncatedPixelData(f"{available} of {needed:.0f} bytes")
    return image


def _check_fragments(fh: BinaryIO, file_size: int, endian: str) -> None:
    """Walk the encapsulated items (headers only) so a cut-off file is refused before decoding."""
    while True:
        header = fh.read(8)
        if len(header) < 8:
            raise TruncatedPixelData("encapsulated pixel data ends without a sequence delimiter")
        group, elem, length = struct.unpack(f"{endian}HHL", header)
        tag = group << 16 | elem
        if tag == _SEQ_DELIM:
            return
        if tag != _ITEM or length == 0xFFFFFFFF:
            raise CorruptImage(f"unexpected tag {tag:08X} in encapsulated pixel data")
        if fh.tell() + length > file_size:
            raise TruncatedPixelData("a fragment runs past the end of the file")
        fh.seek(length, io.SEEK_CUR)


def _open_dataset(ds: Dataset, max_pixels: int) -> DicomImage:
    keyword = next((kw for kw in _PIXEL_TAGS.values() if kw in ds), None)
    if keyword is None:
        raise NoPixelData("no Pixel Data element")
    rows, columns, samples, frames = _check_dimensions(ds, max_pixels)
    tsyntax = _transfer_syntax(ds)
    if tsyntax not in AllTransferSyntaxes:
        raise UnsupportedCompression(f"unknown transfer syntax {tsyntax}")
    value = ds[keyword].value
    if not isinstance(value, bytes | bytearray):
        raise NoPixelData("Pixel Data has no value")
    image = DicomImage(
        ds=ds,
        transfer_syntax=tsyntax,
        frames=frames,
        rows=rows,
        columns=columns,
        samples=samples,
        pixel_keyword=keyword,
        pixel_vr=ds[keyword].VR,
        pixel_bytes=bytes(value),
        encapsulated=tsyntax.is_compressed,
    )
    _check_decoder(image)
    if not image.encapsulated:
        needed = _native_frame_bytes(image) * frames
        if len(value) + 1 < needed:
            raise TruncatedPixelData(f"{len(value)} of {needed:.0f} bytes")
    return image


def _check_decoder(image: DicomImage) -> None:
    try:
        get_decoder(image.transfer_syntax)
    except NotImplementedError:
        if not _fallback_codec(image.transfer_syntax):
            raise UnsupportedCompression(f"transfer syntax {image.transfer_syntax}") from None


def _fallback_codec(tsyntax: UID) -> str | None:
    """The imagecodecs function able to decode a transfer syntax, if any."""
    if tsyntax in JPEGTransferSyntaxes:
        return "jpeg"
    if tsyntax in JPEGLSTransferSyntaxes:
        return "jpegls"
    if tsyntax in JPEG2000TransferSyntaxes:
        return "jpeg2k"
    return None


def decode_frame(image: DicomImage, index: int = 0) -> Frame:
    """Decode frame ``index`` (0-based) and nothing else."""
    if not 0 <= index < image.frames:
        raise FrameOutOfRange(index, image.frames)
    try:
        opts = image.decoding_options()
    except GARBLED as exc:
        raise CorruptImage(f"Image Pixel attributes unreadable: {type(exc).__name__}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if image.pixel_bytes is not None:
            return _decode(image, image.pixel_bytes, index, opts)
        assert image.path is not None and image.pixel_offset is not None
        with image.path.open("rb") as fh:
            fh.seek(image.pixel_offset)
            return _decode(image, fh, index, opts)


def iter_frames(image: DicomImage, indices: list[int] | None = None) -> Iterator[Frame]:
    """Decode frames one after another (all, or ``indices``), holding one at a time."""
    for index in range(image.frames) if indices is None else indices:
        yield decode_frame(image, index)


def _decode(image: DicomImage, src: bytes | BinaryIO, index: int, opts: dict[str, Any]) -> Frame:
    try:
        decoder = get_decoder(image.transfer_syntax)
    except NotImplementedError:
        decoder = None
    first_error: Exception | None = None
    # GDCM aborts the whole process on some corrupt JPEG 2000 codestreams: openjpeg only there.
    plugin = "pylibjpeg" if image.transfer_syntax in JPEG2000TransferSyntaxes else ""
    if image.transfer_syntax == JPEGExtended12Bit and lenient_int(image.ds, "BitsStored", 8) > 8:
        decoder = None  # no permissive pydicom plugin reads 12-bit JPEG: straight to imagecodecs
    if plugin and image.rows * image.columns >= _THREADED_J2K_PIXELS:
        # Big JPEG 2000 frames: imagecodecs' openjpeg decodes on every core (about twice as fast).
        try:
            return _decode_with_imagecodecs(image, src, index, "jpeg2k")
        except CorruptImage:
            if not isinstance(src, bytes):
                src.seek(image.pixel_offset or 0)
    if image.transfer_syntax in _IMAGECODECS_FIRST and image.encapsulated:
        # CharLS and libjpeg-turbo's lossless mode through imagecodecs: several times faster
        # than GDCM here; GDCM stays the fallback.
        try:
            return _decode_with_imagecodecs(image, src, index, _fallback_codec(image.transfer_syntax) or "")
        except CorruptImage:
            if not isinstance(src, bytes):
                src.seek(image.pixel_offset or 0)
    plugins = [plugin]
    if image.transfer_syntax in _PILLOW_FIRST and lenient_int(image.ds, "BitsStored", 8) <= 8:
        plugins = ["pillow", ""]  # libjpeg-turbo through Pillow: faster than GDCM, converts YCbCr itself
    for name in plugins if decoder is not None else []:
        assert decoder is not None
        try:
            # raw: YCbCr stays YCbCr here; the display stage converts it (in C for 8-bit).
            arr, props = decoder.as_array(src, index=index, decoding_plugin=name, raw=True, **opts)
            if not isinstance(src, bytes):
                src.seek(image.pixel_offset or 0)
            photometric = str(props.get("photometric_interpretation", image.photometric))
            return Frame(pixels=arr, photometric=photometric.upper(), index=index)
        except (EOFError, BufferError) as exc:
            raise TruncatedPixelData(type(exc).__name__) from None
        except Exception as exc:  # decoders raise RuntimeError, ValueError, OSError, ...
            first_error = exc
            if not isinstance(src, bytes):
                src.seek(image.pixel_offset or 0)
    if image.encapsulated and (codec := _fallback_codec(image.transfer_syntax)):
        return _decode_with_imagecodecs(image, src, index, codec)
    if first_error is None:
        raise UnsupportedCompression(f"transfer syntax {image.transfer_syntax}")
    if "too short" in str(first_error).lower():
        raise TruncatedPixelData(str(first_error)[:200])
    raise CorruptImage(f"{type(first_error).__name__}: {str(first_error)[:200]}")


def _decode_with_imagecodecs(image: DicomImage, src: bytes | BinaryIO, index: int, codec: str) -> Frame:
    import imagecodecs

    try:
        data = get_frame(src, index, number_of_frames=image.frames)
    except Exception as exc:
        raise CorruptImage(f"frame {index} not found: {type(exc).__name__}") from None
    try:
        if codec == "jpeg":
            try:
                arr = imagecodecs.jpeg8_decode(data)
            except Exception:
                arr = imagecodecs.ljpeg_decode(data)
        elif codec == "jpegls":
            arr = imagecodecs.jpegls_decode(data)
        else:
            arr = imagecodecs.jpeg2k_decode(data, numthreads=os.cpu_count() or 1)
    except Exception as exc:
        raise CorruptImage(f"imagecodecs {codec}: {type(exc).__name__}") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape[:2] != (image.rows, image.columns):
        raise CorruptImage(f"decoded shape {arr.shape} does not match the header")
    if lenient_int(image.ds, "PixelRepresentation", 0) == 1 and arr.dtype.kind == "u":
        bits = lenient_int(image.ds, "BitsStored", arr.dtype.itemsize * 8)
        signed = arr.astype(np.int32)
        signed[signed >= 1 << (bits - 1)] -= 1 << bits
        arr = signed.astype(np.int16 if bits <= 16 else np.int32)
    photometric = image.photometric
    if codec == "jpeg" and arr.ndim == 3 and photometric.startswith("YBR"):
        photometric = "RGB"  # libjpeg converts YCbCr to RGB itself
    return Frame(pixels=arr, photometric=photometric, index=index)
