"""Driver cost against the number of files: `voxlake run` (ingest → annotate with `levels` only → publish)
over N tiny WAV files, for several N, as a user runs it (one command, JVM start-up included).

Each N runs three ways: local mode with the default settings, local mode with the other JIT setting
(`spark.quick_jit`), and `spark-submit jobs/run.py` to a standalone cluster on this machine (bench.standalone),
where the driver (a JVM and the Python driver) runs apart from the executors. In local mode one JVM is
the driver and the executors, so only the standalone run shows the driver's own memory.

Reports wall time, time per file and peak resident memory by process kind, so that growth with N is visible.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from bench.ingest_bench import make_files, timed_command, timed_voxlake
from bench.report import write_section
from bench.standalone import StandaloneCluster

REPO = Path(__file__).resolve().parent.parent
EXECUTOR_CLASS = "CoarseGrainedExecutorBackend"  # a standalone executor JVM's main class, in its command line
# the standalone run's driver and executor get what local mode's one JVM gets (spark.driver_memory, 2g)
CLUSTER_CONF = {"spark.driver.memory": "2g", "spark.executor.memory": "2g", "spark.executor.cores": "2"}

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


def timed_submit(cluster: StandaloneCluster, src: Path, wh: Path, cfg: Path) -> tuple[float, dict, str]:
    cmd = cluster.submit_command("run", "--source", str(src), "--warehouse", str(wh), "--config", str(cfg),
                                 conf=CLUSTER_CONF)
    return timed_command(cmd, ok_codes=(0, 1), env=cluster.env, outside=EXECUTOR_CLASS)


def main(argv=None) -> int:
    from jobs.spark.session import quick_jit_wanted

    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-scale-"))
    default_c1 = quick_jit_wanted("auto")
    jit = {True: "C1 only", False: "full JIT"}
    runs = {}  # (n, way) -> (wall s, peak RSS by kind)
    try:
        configs = {}
        for way, quick in (("default", "auto"), ("other JIT", not default_c1)):
            configs[way] = work / f"cfg-{len(configs)}.yaml"
            configs[way].write_text(yaml.safe_dump({**CONFIG, "spark": {"quick_jit": quick}}))
        with StandaloneCluster(work / "cluster", cores=2, memory="4g") as cluster:
            for n in args.files:
                src = work / f"files{n}"
                make_files(src, n)
                for way in ("default", "other JIT", "standalone"):
                    wh = work / f"wh{n}"
                    if way == "standalone":
                        wall, peak, out = timed_submit(cluster, src, wh, configs["default"])
                    else:
                        wall, peak, out = timed_run(src, wh, configs[way])
                    print(f"{n} {way}: {wall:.1f} s\n{out}", file=sys.stderr)
                    runs[n, way] = (wall, peak)
                    shutil.rmtree(wh, ignore_errors=True)
                shutil.rmtree(src, ignore_errors=True)
        mib = 2**20
        label = {"default": f"local, {jit[default_c1]} (default here)", "other JIT": f"local, {jit[not default_c1]}",
                 "standalone": "standalone cluster"}
        lines = ["## Driver cost against the number of files",
                 "",
                 "`voxlake run` (ingest → annotate with `levels` only → publish, every row judged) over N tiny WAV "
                 "files (0.1 s, 16 kHz), one command each, JVM start-up included. Local mode (the default master): "
                 "one JVM is the driver and the executors, run with the default settings "
                 f"(`spark.quick_jit: auto`, {jit[default_c1]} on this machine's {os.cpu_count()} cores) and with the other JIT "
                 "setting. Standalone cluster: `spark-submit jobs/run.py` to a master and a 2-core worker on this "
                 "machine (the same 2 cores), driver and executor 2 GiB each; the driver's JVM and Python "
                 "process hold only the driver.",
                 "",
                 "| files | how | wall s | ms per file | Python driver (MiB) | driver JVM (MiB) | executor JVM (MiB) "
                 "| Python workers (MiB) |",
                 "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for (n, way), (wall, peak) in runs.items():
            driver_jvm = f"{peak['jvm'] / mib:.0f}"
            executors = f"{peak['executors'] / mib:.0f}" if way == "standalone" else "(in the driver JVM)"
            workers = "–" if way == "standalone" else f"{peak['python_workers'] / mib:.0f}"
            lines.append(f"| {n:,} | {label[way]} | {wall:.1f} | {1000 * wall / n:.2f} | {peak['python'] / mib:.0f} | "
                         f"{driver_jvm} | {executors} | {workers} |")
        if len(args.files) >= 2:
            n0, n1 = args.files[0], args.files[-1]

            def ratio(way, kind):
                return runs[n1, way][1][kind] / runs[n0, way][1][kind]

            def per_file(way):
                return (runs[n1, way][0] / n1) / (runs[n0, way][0] / n0)

            lines += ["", f"{n1:,} vs {n0:,} files (goals: driver memory ≤ 1.3x, time per file ≤ 1.0x):", ""]
            lines.append(f"- standalone cluster, the driver alone: JVM **{ratio('standalone', 'jvm'):.2f}x**, Python "
                         f"driver {ratio('standalone', 'python'):.2f}x; the executor JVM "
                         f"{ratio('standalone', 'executors'):.2f}x; time per file {per_file('standalone'):.2f}x.")
            for way in ("default", "other JIT"):
                lines.append(f"- {label[way]}: the JVM (driver and executors) {ratio(way, 'jvm'):.2f}x, Python "
                             f"driver {ratio(way, 'python'):.2f}x; time per file {per_file(way):.2f}x.")
            lines.append("")
            for n in args.files:
                lines.append(f"- {n:,} files: {label['other JIT']} took {runs[n, 'other JIT'][0]:.1f} s, "
                             f"{label['default']} {runs[n, 'default'][0]:.1f} s "
                             f"({runs[n, 'other JIT'][0] / runs[n, 'default'][0]:.2f}x).")
        write_section(Path(args.out), "scale", "\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
