"""Ingest throughput: `voxlake ingest` over a folder of many small files, as a user runs it.

Reports files per second (first run, and the no-op rerun) and the peak resident memory of the driver
(the Python driver process and the JVM, which in local mode also hosts the executors).
"""
from __future__ import annotations

import argparse
import os
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
    """Polls a process tree; keeps the peak RSS of the Python driver, of the JVMs and of the Python workers.

    The Python driver is the Python process nearest the tree's root: the root itself for `voxlake`, the
    JVM's child under spark-submit. Processes outside the tree whose command line holds `outside` (a
    standalone cluster's executor JVMs) are polled too, as "executors".
    """

    def __init__(self, pid: int, outside: str | None = None):
        self.root = psutil.Process(pid)
        self.outside = outside
        self.peak = {"python": 0, "jvm": 0, "python_workers": 0, "python_worker_max": 0, "executors": 0}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _depth(self, proc: psutil.Process) -> int:
        depth = 0
        while proc is not None and proc.pid != self.root.pid:
            proc, depth = proc.parent(), depth + 1
        return depth

    def _run(self):
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                pythons = [p for p in procs if "python" in p.name()]  # not spark-submit's shell scripts
                driver = min(pythons, key=self._depth) if pythons else None
                workers = 0
                for p in procs:
                    rss = p.memory_info().rss
                    if "java" in p.name():
                        self.peak["jvm"] = max(self.peak["jvm"], rss)
                    elif p is driver:
                        self.peak["python"] = max(self.peak["python"], rss)
                    elif p in pythons:
                        workers += rss
                        self.peak["python_worker_max"] = max(self.peak["python_worker_max"], rss)
                self.peak["python_workers"] = max(self.peak["python_workers"], workers)
                if self.outside:
                    executors = sum(p.memory_info().rss for p in psutil.process_iter(["cmdline"])
                                    if self.outside in " ".join(p.info["cmdline"] or []))
                    self.peak["executors"] = max(self.peak["executors"], executors)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self.thread.join()


def timed_command(cmd: list[str], ok_codes=(0,), env: dict | None = None,
                  outside: str | None = None) -> tuple[float, dict, str]:
    """Run `cmd` from the repository root; (wall seconds, peak RSS by process kind, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    mon = PeakRss(proc.pid, outside=outside)
    out, err = proc.communicate()
    mon.stop()
    wall = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, mon.peak, out


def timed_voxlake(*args: str, ok_codes=(0,)) -> tuple[float, dict, str]:
    """Run `voxlake ARGS` as a user would; (wall seconds, peak RSS by process kind, stdout)."""
    return timed_command([sys.executable, "-m", "jobs.cli", *args], ok_codes=ok_codes)


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
        from jobs.spark.session import quick_jit_wanted

        default_c1 = quick_jit_wanted("auto")  # what `spark.quick_jit: auto` (the default) decides here
        variants = {"default": "auto", "other": not default_c1}
        names = {True: "C1 only", False: "full JIT"}
        runs = {}  # variant -> (first s, rerun s, full-plan rerun s, peak RSS of the first run)
        shortcuts = []  # per rerun: did its summary say the listing matched bronze's (its recorded inputs)?
        for variant, setting in variants.items():
            cfg = work / f"{variant}.yaml"
            cfg.write_text(f"spark: {{quick_jit: {str(setting).lower()}}}\n")
            wh = work / f"wh-{variant}"
            first, peak, out = timed_ingest(src, wh, "--config", str(cfg))
            print(out, file=sys.stderr)
            second, _, out = timed_ingest(src, wh, "--config", str(cfg))
            shortcuts.append(SHORTCUT in out)
            shutil.rmtree(wh / "_state")  # without the listing's record: the rerun joins the listing with bronze
            third, _, out = timed_ingest(src, wh, "--config", str(cfg))
            shortcuts.append(SHORTCUT in out)
            runs[variant] = (first, second, third, peak)
        if shortcuts != [True, False, True, False]:
            raise SystemExit(f"the reruns did not take the expected paths (shortcut taken: {shortcuts})")
        n = args.files
        d, o = runs["default"], runs["other"]
        mib = {k: v / 2**20 for k, v in d[3].items()}
        rows = [("first (list, stat, hash, probe, commit)", 0),
                ("rerun, nothing new: the listing bronze was brought in line with (list, digest, stop)", 1),
                ("rerun, nothing new, without the listing's record (list, join with bronze, no commit)", 2)]
        body = (
            "## Ingest: many small files\n\n"
            f"`voxlake ingest` over {n:,} WAV files (0.1 s, 16 kHz, 3.2 KB each) in {len(list(src.iterdir()))} folders, "
            "local mode (the default master), wall time of the whole command including JVM start-up; a new "
            f"warehouse each, with the default settings (`spark.quick_jit: auto`: {names[default_c1]} on this "
            f"machine's {os.cpu_count()} cores), then with the other JIT setting ({names[not default_c1]}).\n\n"
            f"| run | default ({names[default_c1]}): wall s | files/s | {names[not default_c1]}: wall s | files/s |\n"
            "| --- | ---: | ---: | ---: | ---: |\n"
            + "".join(f"| {label} | {d[i]:.1f} | {n / d[i]:,.0f} | {o[i]:.1f} | {n / o[i]:,.0f} |\n" for label, i in rows)
            + "\nThe first run of a new warehouse appends to bronze (it has nothing to compare with); later runs "
            "MERGE what is new or changed. A rerun plans in full whenever bronze has had a commit since its "
            "listing was recorded (another source's ingest, `voxlake maintain`) or the record is gone; the second "
            "rerun removed `<warehouse>/_state` to measure that path.\n\n"
            f"Peak resident memory of the first run (default settings): JVM (driver + local executors) "
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
