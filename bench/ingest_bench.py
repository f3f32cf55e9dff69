"""Ingest throughput: `voxlake ingest` over a folder of many small files, as a user runs it.

Reports files per second (first run, and the no-op rerun) and the peak resident memory of the driver
(the Python driver process and the JVM, which in local mode also hosts the executors).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
SHORTCUT = "was brought in line with"  # the ingest summary's words when the rerun stopped before the plan


def make_files(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"d{i // 1000:03d}"
        d.mkdir(parents=True, exist_ok=True)
        sf.write(d / f"f{i:06d}.wav", rng.normal(0, 0.05, 1600).astype(np.float32), 16000, subtype="PCM_16")


class PeakRss:
    """Polls a process tree; keeps the peak RSS of the Python driver and of the JVM separately."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = {"python": 0, "jvm": 0, "python_workers": 0, "python_worker_max": 0}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                workers = 0
                for p in procs:
                    rss = p.memory_info().rss
                    if "java" in p.name():
                        self.peak["jvm"] = max(self.peak["jvm"], rss)
                    elif p.pid == self.root.pid:
                        self.peak["python"] = max(self.peak["python"], rss)
                    else:
                        workers += rss
                        self.peak["python_worker_max"] = max(self.peak["python_worker_max"], rss)
                self.peak["python_workers"] = max(self.peak["python_workers"], workers)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self.thread.join()


def timed_voxlake(*args: str, ok_codes=(0,)) -> tuple[float, dict, str]:
    """Run `voxlake ARGS` as a user would; (wall seconds, peak RSS by process kind, stdout)."""
    cmd = [sys.executable, "-m", "jobs.cli", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mon = PeakRss(proc.pid)
    out, err = proc.communicate()
    mon.stop()
    wall = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        raise SystemExit(f"voxlake {args[0]} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, mon.peak, out


def timed_ingest(src: Path, wh: Path, *extra: str) -> tuple[float, dict, str]:
    return timed_voxlake("ingest", "--source", str(src), "--warehouse", str(wh), *extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-ingest-"))
    try:
        src = work / "files"
        t = time.perf_counter()
        make_files(src, args.files)
        print(f"made {args.files} files in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        quick_jit, full_jit = work / "quick-jit.yaml", work / "full-jit.yaml"
        quick_jit.write_text("spark: {quick_jit: true}\n")
        full_jit.write_text("spark: {quick_jit: false}\n")
        runs = {}  # variant -> (first s, rerun s, full-plan rerun s, peak RSS of the first run)
        shortcuts = []  # per rerun: did its summary say the listing matched bronze's (jobs.listing_digest)?
        for variant, extra in (("full JIT", ("--config", str(full_jit))), ("C1 only", ("--config", str(quick_jit)))):
            wh = work / f"wh-{len(runs)}"
            first, peak, out = timed_ingest(src, wh, *extra)
            print(out, file=sys.stderr)
            second, _, out = timed_ingest(src, wh, *extra)
            shortcuts.append(SHORTCUT in out)
            shutil.rmtree(wh / "_state")  # without the listing's record: the rerun joins the listing with bronze
            third, _, out = timed_ingest(src, wh, *extra)
            shortcuts.append(SHORTCUT in out)
            runs[variant] = (first, second, third, peak)
        first, second, third, peak = runs["full JIT"]
        first_c1, second_c1, third_c1, _ = runs["C1 only"]
        if shortcuts != [True, False, True, False]:
            raise SystemExit(f"the reruns did not take the expected paths (shortcut taken: {shortcuts})")
        mib = {k: v / 2**20 for k, v in peak.items()}
        n = args.files
        from jobs.config import load_config

        default_quick = bool(load_config(overrides={"warehouse": str(work)}).section("spark").get("quick_jit"))
        body = (
            "## Ingest: many small files\n\n"
            f"`voxlake ingest` over {n:,} WAV files (0.1 s, 16 kHz, 3.2 KB each) in 10 folders, "
            "local mode (the default master), wall time of the whole command including JVM start-up; a new "
            "warehouse each, with the driver's full JIT (`spark.quick_jit: false`"
            f"{', the default' if not default_quick else ''}), then with C1 only (`spark.quick_jit: true`"
            f"{', the default' if default_quick else ''}).\n\n"
            "| run | wall s | files/s | C1 only: wall s | files/s |\n| --- | ---: | ---: | ---: | ---: |\n"
            f"| first (list, stat, hash, probe, MERGE) | {first:.1f} | {n / first:,.0f} | {first_c1:.1f} | "
            f"{n / first_c1:,.0f} |\n"
            f"| rerun, nothing new: the listing bronze was brought in line with (list, digest, stop) | "
            f"{second:.1f} | {n / second:,.0f} | {second_c1:.1f} | {n / second_c1:,.0f} |\n"
            f"| rerun, nothing new, without the listing's record (list, join with bronze, no commit) | "
            f"{third:.1f} | {n / third:,.0f} | {third_c1:.1f} | {n / third_c1:,.0f} |\n\n"
            "A rerun plans in full whenever bronze has had a commit since its listing was recorded (another "
            "source's ingest, `voxlake maintain`) or the record is gone; the second rerun removed "
            "`<warehouse>/_state` to measure that path.\n\n"
            f"Peak resident memory of the first run (full JIT): JVM (driver + local executors) "
            f"{mib['jvm']:.0f} MiB, Python driver {mib['python']:.0f} MiB, Python workers together "
            f"{mib['python_workers']:.0f} MiB.\n"
        )
        write_section(Path(args.out), "ingest", body)
        print(body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
