"""Rendering speed and memory: Lightbox in process vs dcmtk per process vs Orthanc over loopback.

Run: ``.venv/bin/python benchmarks/render.py [--repeat N] [--no-orthanc] [--no-dcmtk]``

Corpus: every pixel-bearing file of pydicom's test files and pydicom-data (tests/imaging/corpus.py).
Groups: small (single frame, under 1 megapixel), large (single frame, 2 megapixels or more),
multi-frame (first frame of objects with several frames). Each file is rendered to a chat-ready
JPEG (Lightbox: ``telegram_photo_bytes``, long side 1280), by ``dcmj2pnm +oj`` (one process per
file, as it is used), and by Orthanc ``GET /instances/{id}/rendered`` (warm, keep-alive).
Prints median and p95 per group and the ratios. Then peak memory (child processes, max RSS) for
one frame of the 120-frame colour ultrasound, for pydicom decoding that whole object, and for
one frame of a synthetic 1,000-frame object built from a real CT slice.

Targets (issue 3), in process: small median <= 3 ms; large median <= 60 ms; multi-frame first
frame p95 <= 50 ms; beat Orthanc's median on large and multi-frame; one-frame memory < 100 MB
for the ultrasound and < 3 x one decoded frame + baseline for the 1,000-frame object.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imaging.decode import clear_header_cache, open_image  # noqa: E402
from imaging.display import stored_windows  # noqa: E402
from imaging.errors import RenderError  # noqa: E402
from imaging.render import telegram_photo_bytes  # noqa: E402
from tests.imaging.corpus import corpus_files, short_name  # noqa: E402

GROUPS = ("small", "large", "multi-frame")


def group_of(path: Path) -> str | None:
    try:
        image = open_image(path)
        telegram_photo_bytes(image)  # refused files (truncated, corrupt) are not timed
    except RenderError:
        return None
    pixels = image.rows * image.columns
    if image.frames > 1:
        return "multi-frame"
    if pixels < 1_000_000:
        return "small"
    if pixels >= 2_000_000:
        return "large"
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


Renderer = Callable[[Path], Callable[[], object] | None]


def lightbox_renderer(path: Path) -> Callable[[], object] | None:
    def run() -> bytes:
        clear_header_cache()  # every run parses the header again: no credit for remembered headers
        return telegram_photo_bytes(path)

    return run


def dcmtk_options(path: Path) -> list[str]:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    if stored_windows(ds):
        return ["+Wi", "1"]
    if ds.get("VOILUTSequence"):
        return ["+Wl", "1"]
    return ["+Wm"]


def dcmtk_renderer(workdir: Path) -> Renderer:
    target = workdir / "dcmtk.jpg"

    def make(path: Path) -> Callable[[], object] | None:
        command = ["dcmj2pnm", "+oj", *dcmtk_options(path), str(path), str(target)]
        if subprocess.run(command, capture_output=True, check=False).returncode != 0:
            return None  # dcmtk cannot render it (JPEG 2000, JPEG-LS here, 32-bit RGB, segmented palettes)
        return lambda: subprocess.run(command, capture_output=True, check=False)

    return make


def orthanc_renderer(client: Any) -> Renderer:
    def make(path: Path) -> Callable[[], object] | None:
        answer = client.post("/instances", content=path.read_bytes())
        if answer.status_code != 200:
            return None
        url = f"/instances/{answer.json()['ID']}/rendered"
        if client.get(url, headers={"Accept": "image/jpeg"}).status_code != 200:
            return None  # Orthanc cannot render it
        return lambda: client.get(url, headers={"Accept": "image/jpeg"})

    return make


def bench(files: dict[str, list[Path]], renderers: dict[str, Renderer], repeat: int,
          ) -> dict[str, dict[str, dict[Path, list[float]]]]:
    """times[renderer][group][file]: the renderers take turns on each file, so a busy machine
    slows them alike."""
    times: dict[str, dict[str, dict[Path, list[float]]]] = {name: {g: {} for g in GROUPS} for name in renderers}
    for group, paths in files.items():
        for path in paths:
            jobs = {}
            for name, make in renderers.items():
                job = make(path)
                if job is not None:
                    job()  # warm
                    jobs[name] = job
            for _ in range(repeat):
                for name, job in jobs.items():
                    start = time.perf_counter()
                    job()
                    times[name][group].setdefault(path, []).append((time.perf_counter() - start) * 1000)
    return times


MEMORY_CHILD = r"""
import resource, sys, tracemalloc, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
import numpy, pydicom, PIL.Image
from imaging.render import telegram_photo_bytes
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
mode, path = sys.argv[1], sys.argv[2]
before = rss_mb()
tracemalloc.start()
if mode == "lightbox":
    telegram_photo_bytes(path, int(sys.argv[3]))
elif mode == "pydicom-all":
    pydicom.dcmread(path).pixel_array
traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
with open("/proc/self/status") as fh:  # VmHWM: this process's own peak (ru_maxrss survives exec)
    peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
print(before, peak, traced_peak)
"""


def peak_memory(mode: str, path: Path, frame: int = 0) -> tuple[float, float, float]:
    """A child process doing one thing: (RSS MB before, peak RSS MB, peak MB allocated while doing it,
    as tracemalloc sees it: Python objects and numpy arrays)."""
    code = MEMORY_CHILD.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, mode, str(path), str(frame)],
                          capture_output=True, text=True, check=True)
    before, peak, traced = (float(v) for v in done.stdout.split())
    return before, peak, traced


def synthetic_thousand_frames(workdir: Path) -> tuple[Path, int]:
    """A 1,000-frame object made of a real 512 x 512 CT slice, streamed to disk (never whole in
    memory here either); and one frame's size in bytes."""
    import struct

    import pydicom
    from pydicom.data import get_testdata_file

    source = get_testdata_file("693_UNCR.dcm")
    assert source is not None
    ds = pydicom.dcmread(source)
    frame = bytes(ds.PixelData)
    ds.NumberOfFrames = 1000
    path = workdir / "thousand.dcm"
    ds.save_as(path)  # Pixel Data is the last element: patch its length, then append 999 frames
    with path.open("r+b") as fh:
        fh.seek(-(len(frame) + 4), 2)
        fh.write(struct.pack("<L", len(frame) * 1000))
        fh.seek(0, 2)
        for _ in range(999):
            fh.write(frame)
    return path, len(frame)


def report(times: dict[str, dict[str, dict[Path, list[float]]]]) -> None:
    for group in GROUPS:
        for name, groups in times.items():
            per_file = groups[group]
            flat = [t for ts in per_file.values() for t in ts]
            if not flat:
                print(f"  {group:12} {name:9} (renders none)")
                continue
            print(f"  {group:12} {name:9} files {len(per_file):4}  median {statistics.median(flat):8.2f} ms"
                  f"  p95 {percentile(flat, 95):8.2f} ms")
    print("\nRatios, peer median / Lightbox median (above 1: Lightbox faster); whole group, then only the "
          "files both render:")
    ours = times["lightbox"]
    for name, groups in times.items():
        if name == "lightbox":
            continue
        for group in GROUPS:
            theirs = groups[group]
            if not theirs or not ours[group]:
                continue
            whole = statistics.median([t for ts in theirs.values() for t in ts]) / statistics.median(
                [t for ts in ours[group].values() for t in ts])
            common = [p for p in theirs if p in ours[group]]
            same = statistics.median([t for p in common for t in theirs[p]]) / statistics.median(
                [t for p in common for t in ours[group][p]])
            print(f"  {name:9} {group:12} {whole:7.1f} x   same files ({len(common)}): {same:7.1f} x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--no-dcmtk", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    files: dict[str, list[Path]] = {group: [] for group in GROUPS}
    for path in corpus_files():
        group = group_of(path)
        if group:
            files[group].append(path)
    print("corpus: " + ", ".join(f"{g} {len(p)} files" for g, p in files.items()))
    print(f"large: {', '.join(short_name(p) for p in files['large'])}")

    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        renderers: dict[str, Renderer] = {"lightbox": lightbox_renderer}
        if not args.no_dcmtk:
            renderers["dcmtk"] = dcmtk_renderer(workdir)
        if not args.no_orthanc:
            try:
                import httpx

                from tests.services import start_orthanc

                base = stack.enter_context(start_orthanc(workdir / "orthanc"))
                renderers["orthanc"] = orthanc_renderer(stack.enter_context(httpx.Client(base_url=base, timeout=60)))
            except Exception as exc:  # Orthanc missing or failing: say so, measure the rest
                print(f"orthanc: not measured ({type(exc).__name__}: {exc})")
        print(f"\nTo a chat-ready JPEG, {args.repeat} runs a file, renderers taking turns (Lightbox: in "
              "process, long side 1280, header parsed every time; dcmtk: one process per file; Orthanc: "
              "/rendered, warm):")
        report(bench(files, renderers, args.repeat))

        if not args.no_memory:
            from pydicom.data import get_testdata_file

            us = get_testdata_file("color3d_jpeg_baseline.dcm")
            print("\nPeak memory (child processes: VmHWM, and tracemalloc while rendering):")
            if us is not None:
                before, peak, traced = peak_memory("lightbox", Path(str(us)), 60)
                print(f"  interpreter with imports: {before:7.1f} MB RSS")
                print(f"  one frame of the 120-frame colour ultrasound: peak RSS {peak:7.1f} MB, "
                      f"allocated {traced:6.1f} MB (target: under 100 MB)")
                before, peak_all, traced_all = peak_memory("pydicom-all", Path(str(us)))
                print(f"  pydicom decoding all 120 frames (for contrast): peak RSS {peak_all:7.1f} MB, "
                      f"allocated {traced_all:6.1f} MB")
            path, frame_bytes = synthetic_thousand_frames(workdir)
            before, peak, traced = peak_memory("lightbox", path, 999)
            frame_mb = frame_bytes / 2**20
            print(f"  frame 1000 of a synthetic 1,000-frame object ({path.stat().st_size / 2**20:.0f} MB file, "
                  f"{frame_mb:.2f} MB a decoded frame): peak RSS {peak:7.1f} MB (baseline {before:.1f}), "
                  f"allocated {traced:.2f} MB (target: under {3 * frame_mb:.2f} MB over the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
