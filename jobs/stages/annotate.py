"""Annotate: live audio → silver.annotations, incrementally per (audio_id, annotator, version, params).

    voxlake annotate --warehouse DIR [--config FILE]

Select: the audio that lacks a current result for a configured annotator (a missing result, another
version or params, a transient failure, or changed metadata the annotator reads, such as an edited
reference transcript for `text`); identical audio is annotated once. Process: decode once and run the
annotators in the executors, work spread evenly by duration across tasks. Commit: MERGE into silver
updating only the columns computed, then quarantine (stage annotate) every URI whose audio cannot be
decoded; a transient decode failure is retried on the next run and its file leaves quarantine then.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from jobs import outcomes
from jobs.catalog import SILVER
from jobs.config import Config, ConfigError
from jobs.ledger import RunRecord
from jobs.live import audio_view, live_files, meta_hash
from jobs.progress import StageProgress
from jobs.storage import storage_settings
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class AnnotateResult:
    candidates: int
    annotated: int
    audio_seconds: float
    by_annotator: dict  # name -> {"files", "ok", "failed", "skipped", "seconds"}
    errors_by_code: dict
    chunks: int = 0  # silver commits made
    stopped_by_cap: bool = False  # --max-files / --max-hours stopped the run with work left


def register_plugins(config: Config) -> tuple[tuple[str, str], ...]:
    """Register the config's extra annotators (annotate.plugins: {name: "module:Class"}) in this process."""
    from annotators.registry import register

    plugins = tuple(sorted((config.section("annotate").get("plugins") or {}).items()))
    for name, target in plugins:
        try:
            register(name, target)
        except ValueError as exc:
            raise ConfigError(f"annotate.plugins: {exc}") from None
    return plugins


def annotate_spec(config: Config, run_id: str, marker_dir: str | None = None, storage=None):
    from annotators.decode import DecodeLimits
    from annotators.registry import build
    from udfs.annotate import AnnotateSpec

    cfg = config.section("annotate")
    plugins = register_plugins(config)
    names = list(cfg.get("annotators") or [])
    params = {k: dict(v or {}) for k, v in (cfg.get("params") or {}).items()}
    asr = params.get("asr")
    if asr and asr.get("cache_dir") and not Path(asr["cache_dir"]).is_absolute() and "://" not in asr["cache_dir"]:
        asr["cache_dir"] = str(Path(asr["cache_dir"]).resolve())
    try:
        ordered = build(names, params)  # validates names, params and dependencies; loads no model
    except ValueError as exc:
        raise ConfigError(f"annotate config: {exc}") from None
    if cfg.get("gpu_fallback", "cpu") not in ("cpu", "fail"):
        raise ConfigError("annotate.gpu_fallback must be 'cpu' or 'fail'")
    spec = AnnotateSpec(
        names=tuple(a.name for a in ordered),
        params={a.name: a.params for a in ordered},
        limits=DecodeLimits(max_duration_s=float(cfg.get("max_duration_s", 3600))),
        strict=bool(cfg.get("strict", False)),
        gpu_fallback=cfg.get("gpu_fallback", "cpu"),
        file_timeout_s=float(cfg.get("file_timeout_s", 900)),
        run_id=run_id,
        batch_audio_s=float(cfg.get("batch_audio_s", 300)),
        marker_dir=marker_dir,
        max_starts=int(cfg.get("max_worker_deaths", 2)),
        hard_limit_grace_s=float(cfg.get("hard_limit_grace_s", 60)),
        plugins=plugins,
        storage=storage,
    )
    return spec, ordered


def select_work(spark, warehouse: Warehouse, ordered, retry_codes: list[str], max_attempts: int = 2):
    """One row per live audio_id that needs work: uri to read, manifest fields, `need` (annotators to
    run), `inputs` (JSON: annotator -> hash of the metadata it reads) and `current` (JSON results)."""
    from pyspark.sql import functions as F

    from annotators.registry import dependency_closure

    files = audio_view(spark, warehouse)
    silver = spark.read.format("delta").load(warehouse.path(SILVER))
    cols = [a.name for a in ordered]
    joined = files.join(silver.select("audio_id", *[F.col(c).alias(f"_cur_{c}") for c in cols]), "audio_id", "left")
    retry = F.array(*[F.lit(c) for c in retry_codes]) if retry_codes else F.array().cast("array<string>")
    stale = {}
    for a in ordered:
        cur = F.col(f"_cur_{a.name}")
        stale[a.name] = (
            cur.isNull()
            | (cur["version"] != F.lit(a.version))
            | (cur["params_hash"] != F.lit(a.params_hash))
            | ((cur["status"] == "failed") & F.array_contains(retry, cur["error_code"])
               & (F.coalesce(cur["attempt"], F.lit(1)) < F.lit(max_attempts)))
        )
        if a.meta_inputs:
            stale[a.name] = stale[a.name] | ~cur["inputs_hash"].eqNullSafe(meta_hash(a.meta_inputs))
    closure = dependency_closure(ordered)
    needs = []
    for a in ordered:
        expr = stale[a.name]
        for dep in closure[a.name]:
            expr = expr | stale[dep]
        needs.append(F.when(expr, F.lit(a.name)))
    need = F.filter(F.array(*needs), lambda x: x.isNotNull())
    current = F.to_json(F.struct(*[F.col(f"_cur_{c}").alias(c) for c in cols]))
    hashed = [(a.name, meta_hash(a.meta_inputs)) for a in ordered if a.meta_inputs]
    inputs = F.to_json(F.create_map(*[x for name, h in hashed for x in (F.lit(name), h)])) if hashed \
        else F.lit("{}")
    work = joined.select(
        "audio_id", "uri", "reference_text", "language_hint", "duration_s", "source",
        need.alias("need"), inputs.alias("inputs"), current.alias("current"),
    ).where(F.size("need") > 0)
    return work


def _attach_table_bytes(spark, config: Config, work, table_sources: list[str]):
    """Audio that lives in a table's bytes column (uri = table#key, source one of `table_sources`):
    join the bytes back in."""
    from pyspark.sql import functions as F

    from jobs.sources import is_table, list_table

    contents = []
    for source in table_sources:
        kind = is_table(spark, source)
        if kind:
            df = list_table(spark, source, kind, config.section("ingest"))
            if "content" in df.columns:
                contents.append(df.select("uri", "content"))
    if not contents:
        return work.withColumn("content", F.lit(None).cast("binary"))
    all_content = contents[0]
    for df in contents[1:]:
        all_content = all_content.unionByName(df)
    return work.join(all_content, "uri", "left")


def _deal_to_tasks(spark, work, n_tasks: int):
    """Spread files over tasks by audio seconds (udfs.deal: longest first onto the least-loaded task,
    per input partition, without a global ordering), longest first within a task."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StructField, StructType

    from udfs.deal import TASK_COLUMN, make_dealer

    longest_first = F.col("duration_s").desc_nulls_last()
    schema = StructType(work.schema.fields + [StructField(TASK_COLUMN, IntegerType(), False)])
    dealt = work.sortWithinPartitions(longest_first).mapInPandas(make_dealer(_partition_keys(spark, n_tasks)),
                                                                 schema)
    return dealt.repartition(n_tasks, TASK_COLUMN).sortWithinPartitions(longest_first).drop(TASK_COLUMN)


def _partition_keys(spark, n: int) -> list[int]:
    """For each partition i of a hash repartition into n, an int that Spark's partitioner sends there
    (the partition of a row is pmod(hash(key), n), as in SQL). One small job; n rows come back."""
    from pyspark.sql import functions as F

    rows = (spark.range(0, 64 * n).select(F.col("id").cast("int").alias("k"))
            .groupBy(F.expr(f"pmod(hash(k), {n})").alias("p")).agg(F.min("k").alias("k")).collect())
    keys = {int(r["p"]): int(r["k"]) for r in rows}
    if len(keys) != n:  # 64n consecutive ints miss a residue with probability about n * e^-64
        raise RuntimeError(f"no key found for some of {n} partitions")
    return [keys[i] for i in range(n)]


def _chunking(n: int, total_s: float, cfg: dict, caps: dict) -> int:
    """How many commits: one per `commit_every_s` of audio, and small enough that a cap stops the run
    close to it (chunks are hash buckets of equal expected size)."""
    chunks = math.ceil(total_s / max(float(cfg.get("commit_every_s", 3600)), 1.0)) if total_s else 1
    if caps.get("max_files"):
        chunks = max(chunks, math.ceil(n / caps["max_files"]))
    if caps.get("max_hours"):
        chunks = max(chunks, math.ceil(total_s / (caps["max_hours"] * 3600)))
    return max(1, min(chunks, n))


def run_annotate(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> AnnotateResult:
    """Annotate in chunks of about `annotate.commit_every_s` audio seconds, each one silver MERGE: a
    killed run loses at most the chunk in flight, and the next run selects only what is left."""
    from pyspark.sql import functions as F

    cfg = config.section("annotate")
    caps = {"max_files": config.section("run").get("max_files"), "max_hours": config.section("run").get("max_hours")}
    staging = warehouse.staging("annotate", record.run_id)
    spec, ordered = annotate_spec(config, record.run_id, marker_dir=staging + "_inflight",
                                   storage=storage_settings(spark))
    work = select_work(spark, warehouse, ordered, list(cfg.get("retry_codes") or []),
                       int(cfg.get("max_attempts", 2)))
    # one job answers: is there work, how much, and which audio tables hold bytes to join back in
    stats = work.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s"),
                     F.collect_set(F.when(F.col("uri").contains("#"), F.col("source"))).alias("tables")).first()
    n, total_s = int(stats["n"]), float(stats["s"] or 0.0)
    if n == 0:  # a nightly run with nothing new: no staging table (two jobs and a commit saved)
        log.info("annotate: nothing to do for %s", list(spec.names))
        _record_decode_failures(spark, warehouse, record.run_id)  # e.g. a new URI of undecodable audio
        return AnnotateResult(0, 0, 0.0, {}, {})
    work = _attach_table_bytes(spark, config, work, sorted(stats["tables"]))
    work.write.format("delta").mode("overwrite").save(staging + "_in")  # the lease keeps it equal to `stats`
    work = spark.read.format("delta").load(staging + "_in")
    result = AnnotateResult(n, 0, 0.0, {}, {})
    n_chunks = _chunking(n, total_s, cfg, caps)
    log.info("annotate: %d files (%.2f h of audio) need work for %s; %d commit(s)", n, total_s / 3600,
             list(spec.names), n_chunks)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(int(cfg.get("files_per_batch", 4))))
    work = work.withColumn("_chunk", F.pmod(F.xxhash64("audio_id"), F.lit(n_chunks)))
    started = time.perf_counter()
    try:
        for chunk in range(n_chunks):
            part = work.where(F.col("_chunk") == chunk).drop("_chunk")
            label = f"annotate chunk {chunk + 1}/{n_chunks}"
            with StageProgress(spark, label, float(config.section("run").get("progress_log_s", 60))):
                done = _annotate_chunk(spark, config, warehouse, spec, part, f"{staging}_{chunk}", record.run_id,
                                       known=(n, total_s) if n_chunks == 1 else None)
            if done is None:
                continue
            files, seconds, metrics, version = done
            _accumulate(result, files, seconds, metrics)
            _progress(result, n, total_s, started, chunk + 1, n_chunks, version)
            if (caps["max_files"] and result.annotated >= caps["max_files"]) or \
                    (caps["max_hours"] and result.audio_seconds >= caps["max_hours"] * 3600):
                result.stopped_by_cap = chunk + 1 < n_chunks
                if result.stopped_by_cap:
                    log.info("annotate: stopping at the run's cap; the next run continues with what is left")
                break
    finally:
        warehouse.remove(staging + "_in")
        warehouse.remove(staging + "_inflight")
    record.rows_in += result.annotated
    record.audio_seconds += result.audio_seconds
    for key, value in result.errors_by_code.items():
        record.errors_by_code[key] = record.errors_by_code.get(key, 0) + value
    for name, m in result.by_annotator.items():
        record.stage_seconds[f"annotate.{name}"] = round(m["seconds"], 3)
    return result


def _annotate_chunk(spark, config: Config, warehouse: Warehouse, spec, part, staging: str, run_id: str,
                    known: tuple[int, float] | None = None):
    """Annotate one chunk in the executors and commit it: one silver MERGE, then the decode outcomes.
    `known`: the chunk's (files, audio seconds) when already counted (a run of one chunk).
    Returns (files, audio seconds, metrics, silver version) or None for an empty chunk."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from jobs.catalog import annotator_type
    from schemas.silver import ANNOTATED_BY, DECODE
    from udfs.annotate import make_annotate_fn

    cfg = config.section("annotate")
    if known is None:
        stats = part.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).first()
        known = int(stats["n"]), float(stats["s"] or 0.0)
    files, seconds = known
    if files == 0:
        return None
    parallelism = spark.sparkContext.defaultParallelism
    n_tasks = max(1, min(files, max(parallelism, math.ceil(seconds / float(cfg.get("target_task_s", 900))))))
    out_schema = StructType([StructField(c, StringType()) for c in spec.output_columns()])
    raw = _deal_to_tasks(spark, part, n_tasks).mapInPandas(make_annotate_fn(spec), out_schema)
    parsed = raw.select(
        "audio_id",
        F.from_json("decode", DECODE).alias("decode"),
        *[F.from_json(name, annotator_type(name)).alias(name) for name in spec.names],
        F.from_json("annotated_by", ANNOTATED_BY).alias("annotated_by"),
    )
    parsed.write.format("delta").mode("overwrite").save(staging)
    result = spark.read.format("delta").load(staging).join(
        part.select("audio_id", "uri", "duration_s"), "audio_id", "left"
    ).withColumn("updated_at", F.current_timestamp())

    # MERGE: update only the annotator columns computed for that row (null = not computed this run)
    update = {"uri": "s.uri", "duration_s": "s.duration_s", "decode": "s.decode",
              "annotated_by": "s.annotated_by", "updated_at": "s.updated_at"}
    for name in spec.names:
        update[name] = f"coalesce(s.`{name}`, t.`{name}`)"
    insert = {c: f"s.`{c}`" for c in ["audio_id", "uri", "duration_s", "decode", *spec.names,
                                       "annotated_by", "updated_at"]}
    silver = DeltaTable.forPath(spark, warehouse.path(SILVER))
    (
        silver.alias("t")
        .merge(result.alias("s"), "t.audio_id = s.audio_id")
        .whenMatchedUpdate(set=update)
        .whenNotMatchedInsert(values=insert)
        .execute()
    )
    version = warehouse.table_version(SILVER)
    _record_decode_failures(spark, warehouse, run_id)
    metrics = _metrics(spark, result, spec.names)
    warehouse.remove(staging)
    return files, seconds, metrics, version


def _accumulate(result: AnnotateResult, files: int, seconds: float, metrics: dict) -> None:
    result.annotated += metrics["annotated"]
    result.audio_seconds += seconds
    result.chunks += 1
    for name, m in metrics["by_annotator"].items():
        into = result.by_annotator.setdefault(name, {k: 0.0 for k in m})
        for k, v in m.items():
            into[k] += v
    for key, value in metrics["errors"].items():
        result.errors_by_code[key] = result.errors_by_code.get(key, 0) + value


def _progress(result: AnnotateResult, n: int, total_s: float, started: float, chunk: int, chunks: int,
              version: int | None) -> None:
    wall = time.perf_counter() - started
    rate = result.audio_seconds / wall if wall > 0 else 0.0
    left = (total_s - result.audio_seconds) / rate if rate > 0 else float("nan")
    log.info("annotate: chunk %d/%d committed (silver@%s): %d/%d files, %.2f/%.2f h of audio, "
             "%.1fx realtime, ETA %s", chunk, chunks, version, result.annotated, n,
             result.audio_seconds / 3600, total_s / 3600, rate, _eta(left))


def _eta(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "unknown"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _metrics(spark, result, names) -> dict:
    """Per-annotator counts, seconds and failure codes of a committed chunk, in one Spark job.

    Each row becomes one entry per annotator computed for it (plus one for the row itself), grouped by
    (annotator, status, error code): the answer is a few rows whatever the number of files, and one job
    instead of one per annotator (with all twelve annotators the per-annotator queries cost seconds).
    """
    from pyspark.sql import functions as F

    entry = lambda name, status, code, seconds: F.struct(  # noqa: E731
        F.lit(name).alias("name"), status.cast("string").alias("status"), code.cast("string").alias("code"),
        seconds.cast("double").alias("seconds"))
    entries = [entry("", F.lit("row"), F.lit(None), F.lit(0.0))]
    for name in names:
        col = F.col(name)
        entries.append(F.when(col.isNotNull(), entry(name, col["status"], F.when(col["status"] == "failed",
                                                                                  col["error_code"]),
                                                     F.col("annotated_by")["seconds"][name])))
    groups = (result.select(F.explode(F.array(*entries)).alias("e")).where(F.col("e").isNotNull())
              .groupBy("e.name", "e.status", "e.code")
              .agg(F.count("*").alias("n"), F.sum("e.seconds").alias("seconds")).collect())
    annotated, by, errors = 0, {}, {}
    for g in groups:
        if g["name"] == "":
            annotated += int(g["n"])
            continue
        m = by.setdefault(g["name"], {"files": 0.0, "ok": 0.0, "failed": 0.0, "skipped": 0.0, "seconds": 0.0})
        m["files"] += g["n"]
        m["seconds"] += float(g["seconds"] or 0.0)
        if g["status"] in ("ok", "failed", "skipped"):
            m[g["status"]] += g["n"]
        if g["status"] == "failed":
            key = f"{g['name']}:{g['code']}"
            errors[key] = errors.get(key, 0) + int(g["n"])
    by = {name: by[name] for name in names if name in by}  # only the annotators that ran, in order
    return {"annotated": annotated, "by_annotator": by, "errors": errors}


def _record_decode_failures(spark, warehouse: Warehouse, run_id: str) -> None:
    """Every live URI whose audio cannot be decoded is quarantined at this stage (unless it already is,
    for the same audio and code). Transient codes too: the file is retried on the next run, and
    publish takes it out of quarantine once it decodes."""
    from pyspark.sql import functions as F

    silver = spark.read.format("delta").load(warehouse.path(SILVER)).where("decode.status = 'failed'").select(
        "audio_id", F.col("decode.error_code").alias("error_code"), F.col("decode.error_message").alias("reason"))
    rows = live_files(spark, warehouse).select("uri", "audio_id").join(silver, "audio_id")
    rows = outcomes.outcome_rows(rows, run_id, stage="annotate", status=outcomes.QUARANTINED)
    outcomes.record(spark, warehouse, rows, warehouse.staging("annotate_outcomes", run_id))
