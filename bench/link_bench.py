"""`voxlake link` at archive scale: synthetic speaker embeddings and fingerprints for 10k and 100k files.

The rows are generated on the executors (mapInPandas, numpy generators seeded per speaker and per
file, so nothing of size N passes through the driver), written into a fresh warehouse's bronze and silver tables, and the real link stage runs on them.
Speakers: `per_speaker` files share a non-negative random centre (voice embeddings are non-negative)
plus per-file noise, which puts two files of one speaker at cosine ~0.9 and two speakers at ~0.57.
Duplicates: every 100th file gets a copy sharing 2/3 of its 300 landmarks (Jaccard 0.5).

Reported: the stage's wall time, what it found against the truth (same-speaker pairs linked, files
put in a cluster with another speaker, duplicate pairs found) and the driver's memory: the Python
driver's RSS and the JVM heap in use after a GC (local mode: the JVM also holds the executors).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.report import publish

REPO = Path(__file__).resolve().parent.parent
DIM = 256
LANDMARKS = 300


def _generate(batches, per_speaker: int, noise: float):
    """mapInPandas: ids -> (audio_id, id, embedding, landmarks), seeded per speaker and per file, so a
    file's rows do not depend on how the ids were split into partitions."""
    import numpy as np
    import pandas as pd

    for batch in batches:
        out = {"audio_id": [], "id": [], "embedding": [], "landmarks": []}
        for i in batch["id"].tolist():
            centre = np.abs(np.random.default_rng([7, i // per_speaker]).standard_normal(DIM))
            own = np.random.default_rng([11, i])
            v = centre + noise * own.standard_normal(DIM)
            out["audio_id"].append(f"a{i:08d}")
            out["id"].append(i)
            out["embedding"].append((v / np.linalg.norm(v)).astype(np.float32))
            out["landmarks"].append(own.integers(0, 1 << 24, LANDMARKS))
        yield pd.DataFrame(out)


def full_struct(F, dtype, **values):
    """A struct column of type `dtype` with `values` set and every other field null."""
    return F.struct(*[(values[f.name] if f.name in values else F.lit(None)).cast(f.dataType).alias(f.name)
                      for f in dtype.fields])


def make_archive(spark, wh, n: int, per_speaker: int, noise: float) -> None:
    from pyspark.sql import functions as F

    from jobs.warehouse.catalog import SILVER
    from schemas.tables import BRONZE

    silver_types = {f.name: f.dataType for f in SILVER.schema.fields}
    files = spark.range(n).mapInPandas(
        lambda it: _generate(it, per_speaker, noise),
        "audio_id string, id long, embedding array<float>, landmarks array<long>")
    # every 100th file has a copy: 200 of its landmarks and 100 of its own
    copies = files.where(F.col("id") % 100 == 0).select(
        F.format_string("c%08d", "id").alias("audio_id"), "id", "embedding",
        F.concat(F.slice("landmarks", 1, 200),
                 F.transform(F.sequence(F.lit(1), F.lit(100)),
                             lambda j: F.pmod(F.xxhash64(F.col("id"), j, F.lit(99)), F.lit(1 << 24)))).alias("landmarks"))
    rows = files.unionByName(copies)
    silver = rows.select(
        "audio_id",
        F.concat(F.lit("synthetic://"), "audio_id").alias("uri"),
        F.lit(5.0).alias("duration_s"),
        full_struct(F, silver_types["decode"], status=F.lit("ok"), duration_s=F.lit(5.0)).alias("decode"),
        full_struct(F, silver_types["quality"], status=F.lit("ok"), ovrl=3 + F.rand(1)).alias("quality"),
        full_struct(F, silver_types["speakers"], status=F.lit("ok"), embedding=F.col("embedding"),
                    n_speakers=F.lit(1)).alias("speakers"),
        full_struct(F, silver_types["fingerprint"], status=F.lit("ok"), landmarks=F.col("landmarks"),
                    pcm_sha256=F.sha2(F.col("audio_id"), 256)).alias("fingerprint"),
    )
    silver.write.format("delta").mode("append").save(wh.path(SILVER))
    bronze_cols = {f.name: f.dataType for f in BRONZE.schema.fields}
    rows.select(F.concat(F.lit("synthetic://"), "audio_id").alias("uri"), "audio_id",
                F.lit(5.0).alias("duration_s")).select(
        *[F.col(c).cast(bronze_cols[c]) for c in ("uri", "audio_id", "duration_s")]
    ).write.format("delta").mode("append").save(wh.path(BRONZE))


def jvm_heap_mib(spark) -> float:
    from jobs.spark.internals import jvm_heap_used_bytes

    return jvm_heap_used_bytes(spark, collect_garbage=True) / 2**20


def measure(n: int, per_speaker: int, noise: float) -> dict:
    import psutil
    from pyspark.sql import functions as F

    from jobs.config import load_config
    from jobs.spark.session import build_session
    from jobs.stages.link import run_link
    from jobs.warehouse.ledger import RunRecord
    from jobs.warehouse.store import Warehouse
    from schemas.tables import LINKS

    with tempfile.TemporaryDirectory(prefix="voxlake-link-bench-") as work:
        config = load_config(overrides={"warehouse": str(Path(work) / "wh")})
        spark = build_session(config, app_name="voxlake-bench-link")
        wh = Warehouse(spark, config.warehouse)
        wh.attach()
        make_archive(spark, wh, n, per_speaker, noise)
        heap_before = jvm_heap_mib(spark)
        rss_before = psutil.Process().memory_info().rss / 2**20
        t = time.perf_counter()
        result = run_link(spark, config, wh, RunRecord(job="link", config_hash="bench"))
        seconds = time.perf_counter() - t
        heap_after = jvm_heap_mib(spark)
        rss_after = psutil.Process().memory_info().rss / 2**20
        links = spark.read.format("delta").load(wh.path(LINKS)).where(F.col("audio_id").startswith("a")) \
            .withColumn("spk", (F.substring("audio_id", 2, 8).cast("long") / per_speaker).cast("long"))
        # speaker truth: how many true speakers share a cluster, and how many clusters a speaker spans
        mixed = links.groupBy("speaker_cluster_id").agg(F.countDistinct("spk").alias("k")).where("k > 1").count()
        spans = links.groupBy("spk").agg(F.countDistinct("speaker_cluster_id").alias("k"))
        whole = spans.where("k = 1").count()
        speakers = spans.count()
        dups_found = spark.read.format("delta").load(wh.path(LINKS)).where(
            F.col("audio_id").startswith("c") & F.col("duplicate_of").isNotNull()
            | F.col("audio_id").startswith("a") & F.col("duplicate_of").startswith("c")).count()
        spark.stop()
    return {"n": n + n // 100, "seconds": seconds, "result": result, "mixed": mixed, "whole": whole,
            "speakers": speakers, "dups_found": dups_found, "dups_true": (n + 99) // 100,
            "heap": (heap_before, heap_after), "rss": (rss_before, rss_after)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--per-speaker", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.33)
    args = ap.parse_args(argv)
    import os

    load_before = os.getloadavg()[0]
    runs = [measure(int(n), args.per_speaker, args.noise) for n in args.sizes.split(",")]
    load_after = os.getloadavg()[0]
    lines = [
        "## link: speaker clusters and duplicate groups at archive scale",
        "",
        f"Synthetic silver rows generated on the executors (numpy, seeded per speaker and file): speakers of {args.per_speaker} files each (256-d non-negative "
        f"embeddings, per-file noise {args.noise}), every 100th file copied with 2/3 of its {LANDMARKS} landmarks. "
        "The real `link` stage (LSH, connected components, one MERGE into silver.links) on a fresh warehouse, "
        f"local mode, default `link` settings. 1-minute load average at the start {load_before:.1f}, "
        f"at the end {load_after:.1f} (on {os.cpu_count()} cores).",
        "",
        "| files | link wall s | speaker edges | speakers kept in one cluster | clusters mixing speakers | "
        "duplicates found / made | components rounds | Python driver RSS before → after (MiB) | "
        "JVM heap in use before → after (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        res = r["result"]
        lines.append(
            f"| {r['n']:,} | {r['seconds']:.1f} | {res.speaker_edges:,} | {r['whole']:,} / {r['speakers']:,} | "
            f"{r['mixed']:,} | {r['dups_found']:,} / {r['dups_true']:,} | {res.rounds} | "
            f"{r['rss'][0]:.0f} → {r['rss'][1]:.0f} | {r['heap'][0]:.0f} → {r['heap'][1]:.0f} |")
    first, last = runs[0], runs[-1]
    lines += ["", f"{last['n'] / first['n']:.0f}x the files took {last['seconds'] / first['seconds']:.1f}x the time; "
              f"the Python driver's RSS grew by {last['rss'][1] - last['rss'][0]:.0f} MiB over the larger run "
              f"({first['rss'][1] - first['rss'][0]:.0f} MiB over the smaller)."]
    publish(Path(args.out), "link", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
