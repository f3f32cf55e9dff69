"""Long files in bounded memory: one 60-minute and one 3-hour 16 kHz WAV of real speech (the corpus's
English files, repeated) through the annotators, in a fresh process per file.

Reports the process's peak RSS above its baseline after the models were loaded (and warmed up on a
short file), and the x-realtime. Both files run the default annotator list (`--no-asr-3h` leaves `asr` and
`text` out of the 3-hour run: ASR alone takes ~20 minutes of it on two cores).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository


def default_annotators() -> list[str]:
    """The shipped default list (jobs/defaults.yaml), so that the benchmark follows it."""
    from jobs.config import load_config

    return list(load_config(overrides={"warehouse": "unused"}).annotate.annotators)


def make_long_wav(path: Path, minutes: float) -> None:
    import csv

    import numpy as np
    import soundfile as sf

    from annotators.decode import decode

    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["kind"] == "speech" and r["language"] == "en"]
    pieces = []
    for r in rows:
        with open(CORPUS / r["path"], "rb") as fh:
            pieces.append(decode(fh).samples)
    speech = np.concatenate(pieces)
    n = int(minutes * 60 * 16000)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        written = 0
        while written < n:
            take = speech[: n - written]
            out.write(take)
            written += len(take)


def child(path: str, names: list[str]) -> None:
    """Runs in a fresh process: load, warm up, then decode and annotate one long file, step by step
    (the decode, then each annotator in the pipeline's order, through the pipeline's own per-annotator
    call), recording the peak RSS of each step above the loaded-model baseline."""
    import psutil

    from annotators.decode import DecodeLimits
    from annotators.pipeline import FileInput, Pipeline
    from annotators.registry import build
    from udfs.files import open_uri

    proc = psutil.Process()
    # annotate.max_duration_s defaults to 3600: raised here, as a user with 3-hour files would
    pipeline = Pipeline(build(names, {"asr": {"cache_dir": str(REPO / ".deps" / "models")}}),
                        DecodeLimits(max_duration_s=4 * 3600))
    pipeline.setup(threads=2)
    short = str(next(CORPUS.glob("speech/en/LJ001-0001.wav")))
    pipeline.run([FileInput("warm", lambda: open_uri(short))])
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    steps = {}
    start = time.perf_counter()
    audio, info = pipeline.decode_one(FileInput("long", lambda: open_uri(path)))
    steps["decode"] = {"peak": peak[0] - baseline, "seconds": time.perf_counter() - start}
    statuses = {}
    for a in pipeline.annotators:
        peak[0] = proc.memory_info().rss
        began = time.perf_counter()
        (result,) = pipeline._annotate(a, [audio])
        audio.upstream[a.name] = result
        statuses[a.name] = result["status"]
        steps[a.name] = {"peak": peak[0] - baseline, "seconds": time.perf_counter() - began}
    wall = time.perf_counter() - start
    stop.set()
    t.join()
    print(json.dumps({"baseline": baseline, "peak": baseline + max(s["peak"] for s in steps.values()), "wall": wall,
                      "duration": info.get("duration_s"), "statuses": statuses, "decode": info["status"],
                      "steps": steps}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, metavar=("PATH", "NAMES"))
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-asr-3h", action="store_true", help="leave asr and text out of the 3-hour file")
    ap.add_argument("--minutes", type=int, nargs="+", default=[60, 180], help="the files' lengths (60 180)")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1].split(","))
        return 0
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-long-"))
    rows = []
    load_start = os.getloadavg()[0]
    try:
        every = default_annotators()
        long_names = [n for n in every if n not in ("asr", "text")] if args.no_asr_3h else every
        for minutes, names in ((m, every if m <= 60 else long_names) for m in args.minutes):
            path = work / f"speech_{minutes}min.wav"
            make_long_wav(path, minutes)
            res = subprocess.run([sys.executable, "-m", "bench.longfile_bench", "--child", str(path), ",".join(names)],
                                 cwd=REPO, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(res.stderr[-3000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append((minutes, names, r))
            path.unlink()
        mib = 2**20
        lines = ["## Long files: worker memory",
                 "",
                 "One 16 kHz mono WAV of real speech (the corpus's English files repeated), decoded once and "
                 "annotated by each annotator in turn in a fresh process (two threads), after its models were "
                 "loaded and warmed up on a short file. Peak RSS is measured above that baseline. The duration "
                 "limit (`annotate.max_duration_s`, 3600 by default) is raised to 4 h for a 3-hour file. "
                 f"1-minute load average at the start {load_start:.1f}, at the end {os.getloadavg()[0]:.1f} "
                 f"(on {os.cpu_count()} cores): other work on the machine slows the x realtime, not the memory.",
                 "",
                 "| file | annotators | statuses | peak RSS above baseline (MiB) | baseline (MiB) | x realtime |",
                 "| --- | --- | --- | ---: | ---: | ---: |"]
        for minutes, names, r in rows:
            ok = sum(1 for s in r["statuses"].values() if s == "ok")
            others = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items() if v != "ok")
            lines.append(f"| {minutes} min | {', '.join(names)} | {ok}/{len(names)} ok"
                         + (f" ({others})" if others else "") + " | "
                         f"{(r['peak'] - r['baseline']) / mib:,.0f} | {r['baseline'] / mib:,.0f} | "
                         f"{r['duration'] / r['wall']:.1f} |")
        lines += ["", "Goal: ≤ 1.5 GiB (1,536 MiB) above the loaded-model baseline.", "",
                  "Each step's peak RSS above the same baseline (MiB; the decoded signal, held from the decode "
                  "on, is part of every step after it; seconds in brackets):", "",
                  "| step | " + " | ".join(f"{m} min" for m, _, _ in rows) + " |",
                  "| --- |" + " ---: |" * len(rows)]
        for step in rows[0][2]["steps"]:
            cells = []
            for _, _, r in rows:
                st = r["steps"].get(step)
                cells.append(f"{st['peak'] / mib:,.0f} ({st['seconds']:.1f} s)" if st else "not run")
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        write_section(Path(args.out), "longfile", "\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
