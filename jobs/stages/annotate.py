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
from dataclasses import dataclass
from pathlib import Path

from jobs import outcomes
from jobs.catalog import SILVER
from jobs.config import Config, ConfigError
from jobs.ledger import RunRecord
from jobs.live import audio_view, live_files, meta_hash
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class AnnotateResult:
    candidates: int
    annotated: int
    audio_seconds: float
    by_annotator: dict  # name -> {"files", "ok", "failed", "skipped", "seconds"}
    errors_by_code: dict


def annotate_spec(config: Config, run_id: str):
    from annotators.decode import DecodeLimits
    from annotators.registry import build
    from udfs.annotate import AnnotateSpec

    cfg = config.section("annotate")
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
    )
    return spec, ordered


def _deps_closure(ordered) -> dict[str, set[str]]:
    """For each annotator, every annotator it reads from, transitively (requires and uses)."""
    by_name = {a.name: a for a in ordered}
    closure: dict[str, set[str]] = {}
    for a in ordered:  # dependency order: inputs come first
        deps = {d for d in (*a.requires, *a.uses) if d in by_name}
        closure[a.name] = deps | set().union(*(closure[d] for d in deps)) if deps else set()
    return closure


def select_work(spark, warehouse: Warehouse, ordered, retry_codes: list[str]):
    """One row per live audio_id that needs work: uri to read, manifest fields, `need` (annotators to
    run), `inputs` (JSON: annotator -> hash of the metadata it reads) and `current` (JSON results)."""
    from pyspark.sql import functions as F

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
            | ((cur["status"] == "failed") & F.array_contains(retry, cur["error_code"]))
        )
        if a.meta_inputs:
            stale[a.name] = stale[a.name] | ~cur["inputs_hash"].eqNullSafe(meta_hash(a.meta_inputs))
    closure = _deps_closure(ordered)
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


def _attach_table_bytes(spark, config: Config, work):
    """Audio that lives in a table's bytes column (uri = table#key): join the bytes back in."""
    from pyspark.sql import functions as F

    from jobs.sources import is_table, list_table

    table_sources = [r["source"] for r in work.where(F.col("uri").contains("#")).select("source").distinct().collect()]
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


def _spread_by_duration(work, n_tasks: int):
    """Deal files to tasks like cards, longest first, so every task gets a similar amount of audio."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    w = Window.orderBy(F.col("duration_s").desc_nulls_last(), "audio_id")
    dealt = work.withColumn("_slot", (F.row_number().over(w) - 1) % n_tasks)
    rdd = dealt.rdd.map(lambda r: (r["_slot"], r)).partitionBy(n_tasks, lambda k: k).values()
    return rdd.toDF(dealt.schema).drop("_slot")


def run_annotate(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> AnnotateResult:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from jobs.catalog import annotator_type
    from schemas.silver import ANNOTATED_BY, DECODE
    from udfs.annotate import make_annotate_fn

    cfg = config.section("annotate")
    spec, ordered = annotate_spec(config, record.run_id)
    work = select_work(spark, warehouse, ordered, list(cfg.get("retry_codes") or []))
    work = _attach_table_bytes(spark, config, work)
    staging = warehouse.staging("annotate", record.run_id)
    work.write.format("delta").mode("overwrite").save(staging + "_in")
    work = spark.read.format("delta").load(staging + "_in")
    stats = work.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).first()
    n, total_s = int(stats["n"]), float(stats["s"] or 0.0)
    log.info("annotate: %d files (%.1f s of audio) need work for %s", n, total_s, list(spec.names))
    if n == 0:
        warehouse.remove(staging + "_in")
        _record_decode_failures(spark, warehouse, record.run_id)  # e.g. a new URI of undecodable audio
        return AnnotateResult(0, 0, 0.0, {}, {})

    parallelism = spark.sparkContext.defaultParallelism
    n_tasks = max(1, min(n, max(parallelism, math.ceil(total_s / float(cfg.get("target_task_s", 900))))))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(int(cfg.get("files_per_batch", 4))))
    out_schema = StructType([StructField(c, StringType()) for c in spec.output_columns()])
    raw = _spread_by_duration(work, n_tasks).mapInPandas(make_annotate_fn(spec), out_schema)
    parsed = raw.select(
        "audio_id",
        F.from_json("decode", DECODE).alias("decode"),
        *[F.from_json(name, annotator_type(name)).alias(name) for name in spec.names],
        F.from_json("annotated_by", ANNOTATED_BY).alias("annotated_by"),
    )
    parsed.write.format("delta").mode("overwrite").save(staging)
    result = spark.read.format("delta").load(staging).join(
        work.select("audio_id", "uri", "duration_s"), "audio_id", "left"
    ).withColumn("updated_at", F.current_timestamp())

    # MERGE: update only the annotator columns computed for that row (null = not computed this run)
    update = {"uri": "s.uri", "duration_s": "s.duration_s", "decode": "s.decode",
              "annotated_by": "s.annotated_by", "updated_at": "s.updated_at"}
    for name in spec.names:
        update[name] = f"coalesce(s.`{name}`, t.`{name}`)"
    insert = {c: f"s.`{c}`" for c in ["audio_id", "uri", "duration_s", "decode", *spec.names,
                                       "annotated_by", "updated_at"]}
    (
        DeltaTable.forPath(spark, warehouse.path(SILVER)).alias("t")
        .merge(result.alias("s"), "t.audio_id = s.audio_id")
        .whenMatchedUpdate(set=update)
        .whenNotMatchedInsert(values=insert)
        .execute()
    )
    _record_decode_failures(spark, warehouse, record.run_id)
    metrics = _metrics(spark, result, spec.names)
    warehouse.remove(staging)
    warehouse.remove(staging + "_in")
    record.rows_in += n
    record.audio_seconds += total_s
    for key, value in metrics["errors"].items():
        record.errors_by_code[key] = record.errors_by_code.get(key, 0) + value
    for name, m in metrics["by_annotator"].items():
        record.stage_seconds[f"annotate.{name}"] = round(m["seconds"], 3)
    return AnnotateResult(n, metrics["annotated"], total_s, metrics["by_annotator"], metrics["errors"])


def _metrics(spark, result, names) -> dict:
    from pyspark.sql import functions as F

    aggs = [F.count("*").alias("annotated")]
    for name in names:
        aggs += [
            F.count(F.col(name)).alias(f"{name}__files"),
            F.sum(F.when(F.col(name)["status"] == "ok", 1).otherwise(0)).alias(f"{name}__ok"),
            F.sum(F.when(F.col(name)["status"] == "failed", 1).otherwise(0)).alias(f"{name}__failed"),
            F.sum(F.when(F.col(name)["status"] == "skipped", 1).otherwise(0)).alias(f"{name}__skipped"),
            F.sum(F.when(F.col(name).isNotNull(), F.col("annotated_by")["seconds"][name])).alias(f"{name}__seconds"),
        ]
    row = result.agg(*aggs).first().asDict()
    by = {name: {k: float(row[f"{name}__{k}"] or 0) for k in ("files", "ok", "failed", "skipped", "seconds")}
          for name in names if row[f"{name}__files"]}  # only the annotators that ran
    errors: dict[str, int] = {}
    for name in names:
        for r in result.where(F.col(name)["status"] == "failed").groupBy(F.col(name)["error_code"].alias("c")).count().collect():
            errors[f"{name}:{r['c']}"] = int(r["count"])
    return {"annotated": int(row["annotated"]), "by_annotator": by, "errors": errors}


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
