"""Driver cost against the number of files: `voxlake run` (ingest → annotate with `levels` only → publish)
over N tiny WAV files, for several N, as a user runs it (one command, JVM start-up included).

Reports wall time, time per file and the peak resident memory of the Python driver and of the JVM (in
local mode the JVM hosts the executors too), so that growth with N is visible.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from bench.ingest_bench import make_files, timed_voxlake
from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent

CONFIG = {
    "annotate": {"annotators": ["levels"]},
    # levels alone leaves the other gate inputs unknown: every row is judged (and quarantined), and the
    # rejected share may be 100 %
    "publish": {"recipe": {"optional_annotators": ["vad", "snr", "bandwidth", "quality", "text"]},
                "critical": {"max_rejected_share": 1.0, "min_non_null_share": 0.0,
                             "mean_dnsmos_min": None, "mean_dnsmos_max": None,
                             "median_snr_min": None, "median_snr_max": None}},
}


def timed_run(src: Path, wh: Path, cfg: Path) -> tuple[float, dict, str]:
    # exit 1 (a blocked publish) still measures the whole run
    return timed_voxlake("run", "--source", str(src), "--warehouse", str(wh), "--config", str(cfg), ok_codes=(0, 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-scale-"))
    rows = []
    try:
        cfg = work / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(CONFIG))
        for n in args.files:
            src, wh = work / f"files{n}", work / f"wh{n}"
            make_files(src, n)
            wall, peak, out = timed_run(src, wh, cfg)
            print(out, file=sys.stderr)
            rows.append((n, wall, peak))
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(wh, ignore_errors=True)
        mib = 2**20
        lines = ["## Driver cost against the number of files",
                 "",
                 "`voxlake run` (ingest → annotate with `levels` only → publish, every row judged) over N tiny WAV "
                 "files (0.1 s, 16 kHz), local mode, one command each, JVM start-up included. In local mode the "
                 "JVM holds the executors too.",
                 "",
                 "| files | wall s | ms per file | peak RSS Python driver (MiB) | peak RSS JVM (MiB) | Python workers (MiB) |",
                 "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for n, wall, peak in rows:
            lines.append(f"| {n:,} | {wall:.1f} | {1000 * wall / n:.2f} | {peak['python'] / mib:.0f} | "
                         f"{peak['jvm'] / mib:.0f} | {peak['python_workers'] / mib:.0f} |")
        if len(rows) >= 2:
            (n0, w0, p0), (n1, w1, p1) = rows[0], rows[-1]
            lines += ["", f"{n1:,} vs {n0:,} files: Python driver memory {p1['python'] / p0['python']:.2f}x, JVM "
                          f"{p1['jvm'] / p0['jvm']:.2f}x (goal ≤ 1.3x); time per file {(w1 / n1) / (w0 / n0):.2f}x "
                          "(goal ≤ 1.0x)."]
        write_section(Path(args.out), "scale", "\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
