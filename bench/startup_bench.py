"""Where the fixed cost of a command goes: `voxlake annotate` with nothing to do, phase by phase.

A warehouse of a few corpus files, annotated once (`levels`); then the annotate command again, which
finds no work. The child process runs the same calls as `jobs.commandline.runner` (session, storage check, lease,
attach, reap, annotate, ledger) with a clock between them; the whole CLI command is timed too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.report import publish

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
REPEATS = 3


def phases(config_file: str, warehouse: str) -> list[tuple[str, float]]:
    """Runs in a fresh process: the runner's steps, each timed (seconds since the previous mark)."""
    t0 = time.perf_counter()
    marks: list[tuple[str, float]] = []

    def mark(name):
        marks.append((name, time.perf_counter()))

    from jobs.config import load_config
    from jobs.io.storage import check_storage
    from jobs.spark.session import build_session
    from jobs.stages import annotate as stage
    from jobs.warehouse.catalog import RUNS, TABLES
    from jobs.warehouse.lease import Heartbeat, reap_dead_runs
    from jobs.warehouse.ledger import RunRecord, write_run
    from jobs.warehouse.state import StageState
    from jobs.warehouse.store import Warehouse

    mark("Python imports (voxlake, pyspark)")
    config = load_config(config_file=config_file, overrides={"warehouse": warehouse})
    spark = build_session(config, app_name="voxlake-startup-bench")
    mark("JVM start, Spark session, Delta extensions")
    check_storage(spark, config)
    mark("storage check")
    wh = Warehouse(spark, config.warehouse)
    stage.register_plugins(config)
    record = RunRecord(job="annotate", config_hash=config.hash())
    run = config.run
    lease = Heartbeat(wh, record, run.heartbeat_s, run.dead_after_s, run.lease_wait_s)
    lease.__enter__()
    mark("warehouse lease (claim, settle)")
    wh.attach()
    mark("attach tables (create missing, check schemas)")
    reap_dead_runs(wh, run.dead_after_s, own_run_id=record.run_id)
    mark("reap dead runs")
    unchanged = StageState.unchanged

    def timed_unchanged(self, *a, **k):
        out = unchanged(self, *a, **k)
        mark("annotate: inputs as recorded? (table versions, the stage's record)")
        return out

    StageState.unchanged = timed_unchanged
    select = stage.select_work

    def timed_select(*a, **k):
        out = select(*a, **k)
        mark("annotate: plan the work query")
        return out

    stage.select_work = timed_select
    outcomes = stage._record_decode_failures

    def timed_outcomes(*a, **k):
        mark("annotate: is there work? (first Spark job)")
        out = outcomes(*a, **k)
        mark("annotate: undecodable files to quarantine")
        return out

    stage._record_decode_failures = timed_outcomes
    stage.run_annotate(spark, config, wh, record)
    record.delta_versions = {s.qualified: wh.table_version(s) for s in TABLES if s != RUNS}
    mark("table versions for the ledger")
    write_run(wh, record)
    mark("ledger row (ops.runs)")
    lease.__exit__(None, None, None)
    spark.stop()
    mark("release, Spark stop")
    out, prev = [], t0
    for name, t in marks:
        out.append((name, t - prev))
        prev = t
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(phases(*args.child)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-startup-"))
    try:
        src = work / "src"
        src.mkdir()
        for f in sorted((CORPUS / "speech" / "en").glob("LJ001-000*.wav")):
            shutil.copy(f, src / f.name)
        cfg = work / "levels.yaml"
        cfg.write_text("annotate: {annotators: [levels]}\n")
        wh = str(work / "wh")
        cli = [sys.executable, "-m", "jobs.cli"]
        subprocess.run([*cli, "ingest", "--source", str(src), "--warehouse", wh], cwd=REPO, check=True,
                       capture_output=True)
        subprocess.run([*cli, "annotate", "--warehouse", wh, "--config", str(cfg)], cwd=REPO, check=True,
                       capture_output=True)
        record = Path(wh, "_state", "annotate")  # where annotate records inputs it found nothing to do for
        from jobs.config import load_config
        from jobs.spark.class_archive import usable_archive
        from jobs.spark.jars import local_delta_jars
        from jobs.spark.session import quick_jit_wanted

        archive = usable_archive(local_delta_jars())
        defaults = load_config(overrides={"warehouse": wh}).spark
        effective = {"class_archive": defaults.class_archive,  # quick_jit: auto decided for this machine
                     "quick_jit": quick_jit_wanted(defaults.quick_jit)}
        variants = {  # label -> spark settings
            "neither": {"class_archive": False, "quick_jit": False},
            "class archive": {"class_archive": True, "quick_jit": False},
            "class archive + C1-only JIT": {"class_archive": True, "quick_jit": True},
        }
        shipped = next((label for label, v in variants.items()
                        if all(effective[k] == x for k, x in v.items())), None)
        configs = {}
        for i, (label, spark_cfg) in enumerate(variants.items()):
            configs[label] = work / f"variant-{i}.yaml"
            configs[label].write_text(yaml.safe_dump({"annotate": {"annotators": ["levels"]}, "spark": spark_cfg}))
        # per variant: a run that selects (no record: it queries, finds nothing and records its inputs),
        # then one that finds its inputs recorded and stops there (a nightly run with nothing new)
        command_s: dict[tuple[str, str], list[float]] = {}
        for _ in range(REPEATS):  # interleaved, so that a slow moment of the machine hits every variant
            for label, config_file in configs.items():
                for path in ("selects", "recorded"):
                    if path == "selects":
                        shutil.rmtree(record, ignore_errors=True)
                    start = time.perf_counter()
                    subprocess.run([*cli, "annotate", "--warehouse", wh, "--config", str(config_file)], cwd=REPO,
                                   check=True, capture_output=True)
                    command_s.setdefault((label, path), []).append(time.perf_counter() - start)
        medians = {key: statistics.median(times) for key, times in command_s.items()}
        steps_by_path = {}
        for path in ("selects", "recorded"):
            if path == "selects":
                shutil.rmtree(record, ignore_errors=True)
            child = subprocess.run([sys.executable, "-m", "bench.startup_bench", "--child", str(cfg), wh],
                                   cwd=REPO, check=True, capture_output=True, text=True)
            steps_by_path[path] = json.loads(child.stdout.strip().splitlines()[-1])
        def bold(label, text):
            return f"**{text}**" if label == shipped else text

        lines = [
            "## Fixed cost: `voxlake annotate` with nothing to do",
            "",
            f"{len(list(src.iterdir()))} files already annotated; local mode. The whole command as a user runs it, "
            f"median of {REPEATS} runs each: once with no record of the stage's inputs (it queries bronze and "
            "silver, finds nothing to do and records its inputs), once right after (its inputs are as recorded: "
            "it stops before any query, as a nightly run with nothing new does).",
            "",
            "| local driver JVM | spark settings | wall s, selects | wall s, inputs as recorded |",
            "| --- | --- | ---: | ---: |",
            *[f"| {label}{' (default)' if label == shipped else ''} | `class_archive: {str(v['class_archive']).lower()}`, "
              f"`quick_jit: {str(v['quick_jit']).lower()}`"
              f"{'' if archive or not v['class_archive'] else ' (no archive was found: none used)'} | "
              + " | ".join(bold(label, f"{medians[(label, path)]:.1f}") for path in ("selects", "recorded")) + " |"
              for label, v in variants.items()],
        ]
        for path, title in (("selects", "with no record of its inputs"), ("recorded", "with its inputs as recorded")):
            steps = steps_by_path[path]
            total = sum(s for _, s in steps)
            lines += [
                "",
                f"The same steps timed one by one in a fresh process, {title}, default settings"
                f"{'' if archive else ' (no archive made)'}, `quick_jit: {str(defaults.quick_jit).lower()}` "
                f"({'C1 only' if effective['quick_jit'] else 'the full JIT'} on this machine's {os.cpu_count()} "
                f"cores; {total:.1f} s):",
                "",
                "| step | seconds | share |",
                "| --- | ---: | ---: |",
                *[f"| {name} | {s:.2f} | {s / total:.0%} |" for name, s in steps],
            ]
        lines += [
            "",
            "The first Spark job of a session pays for query compilation and the first Delta snapshots; "
            "whichever step runs it first shows that cost.",
        ]
        publish(Path(args.out), "startup", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
