"""Accuracy and speed of ``handlers.understanding.understand`` on the utterance sets.

Run: ``.venv/bin/python benchmarks/understand.py [FILE.jsonl ...]``

Without arguments it measures ../shared/devset/utterances.jsonl (or the copy in
tests/handlers/understanding/data/ when ../shared is absent) and the project's own extra set. For each file it
prints, by language, intent accuracy and exact-slot accuracy (intent right and slots equal to the expected ones),
then the time per message (median, 95th percentile, max). Targets (issue 6): intent >= 95 %, slots >= 90 %,
median under 2 ms. A line's language is its ``lang`` field, or the understanding's own guess.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.understanding import understand  # noqa: E402
from handlers.understanding.lexicon import load_lexicon  # noqa: E402

DATA = ROOT / "tests" / "handlers" / "understanding" / "data"
SHARED_DEVSET = ROOT.parent / "shared" / "devset" / "utterances.jsonl"


def default_files() -> list[Path]:
    devset = SHARED_DEVSET if SHARED_DEVSET.is_file() else DATA / "devset_utterances.jsonl"
    return [devset, DATA / "extra_utterances.jsonl"]


def measure(path: Path, repeats: int) -> tuple[bool, list[float]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    per_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    timings: list[float] = []
    failures = []
    for row in rows:
        today = dt.date.fromisoformat(row["today"])
        result = understand(row["text"], today)
        for _ in range(repeats):
            start = time.perf_counter()
            understand(row["text"], today)
            timings.append((time.perf_counter() - start) * 1000)
        lang = row.get("lang") or result.language
        intent_ok = result.intent == row["intent"]
        slots_ok = intent_ok and result.slots == row["slots"]
        for key in (lang, "all"):
            per_lang[key][0] += 1
            per_lang[key][1] += intent_ok
            per_lang[key][2] += slots_ok
        if not slots_ok:
            failures.append((row["text"][:80], row["intent"], row["slots"], result.intent, result.slots))
    print(f"\n{path} ({len(rows)} messages)")
    print(f"  {'language':<9} {'n':>4} {'intent':>8} {'slots':>8}")
    for lang in sorted(per_lang, key=lambda k: (k == "all", k)):
        n, i, s = per_lang[lang]
        print(f"  {lang:<9} {n:>4} {100 * i / n:>7.1f}% {100 * s / n:>7.1f}%")
    for text, want_i, want_s, got_i, got_s in failures:
        print(f"  miss: {text!r}: expected {want_i} {want_s}, got {got_i} {got_s}")
    n, i, s = per_lang["all"]
    return (i / n >= 0.95 and s / n >= 0.90), timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="JSONL utterance files (default: devset and extra set)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per message (default 20)")
    args = parser.parse_args()
    start = time.perf_counter()
    load_lexicon()
    print(f"lexicon loaded in {(time.perf_counter() - start) * 1000:.1f} ms (once per process)")
    all_ok = True
    timings: list[float] = []
    for path in args.files or default_files():
        ok, t = measure(path, args.repeats)
        all_ok &= ok
        timings += t
    timings.sort()
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(f"\ntime per message over {len(timings)} runs: median {statistics.median(timings):.3f} ms, "
          f"p95 {p95:.3f} ms, max {timings[-1]:.3f} ms (target: median < 2 ms)")
    long_text = "please show me my knee MRI " + "and also " * 2000
    start = time.perf_counter()
    understand(long_text, dt.date(2026, 11, 28))
    print(f"a {len(long_text)}-character message: {(time.perf_counter() - start) * 1000:.1f} ms")
    print("accuracy targets met" if all_ok else "accuracy targets NOT met")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
