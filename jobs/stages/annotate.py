"""Annotate: live audio → silver.annotations, incrementally per (audio_id, annotator, version, params).

    voxlake annotate --warehouse DIR [--config FILE]

Select: the audio that lacks a current result for a configured annotator (a missing result, another
version or params, a transient failure, or changed metadata the annotator reads, such as an edited
reference transcript for `text`); identical audio is annotated once. Process: decode once and run the
annotators in the executors, work spread evenly by duration across tasks. Commit: MERGE into silver
updating only the columns computed. Every URI whose audio cannot be decoded is quarantined (stage
annotate) by the run's reconcile step; a transient decode failure is retried on the next run and its
file leaves quarantine then.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from annotators.cascade import Cascade, gated_params_hash
from jobs.config import Config, ConfigError
from jobs.io.sources import is_table, list_table
from jobs.io.storage import storage_settings
from jobs.stages.recipe import cascade_for
from jobs.stages.stage import Inputs, Stage, StageContext, Work, chunk_count, run_stage
from jobs.warehouse.catalog import SILVER, annotator_type
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.live import audio_view, meta_hash
from jobs.warehouse.store import Warehouse
from schemas.errors import ErrorCode
from schemas.silver import ANNOTATED_BY, DECODE
from schemas.tables import BRONZE

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

    plugins = tuple(sorted(config.annotate.plugins.items()))
    for name, target in plugins:
        try:
            register(name, target)
        except ValueError as exc:
            raise ConfigError(f"annotate.plugins: {exc}") from None
    return plugins


def annotate_spec(config: Config, run_id: str, marker_dir: str | None = None, storage=None):
    """What the executors need (udfs.annotate.AnnotateSpec) and the configured annotators, in order."""
    from annotators.decode import DecodeLimits
    from annotators.registry import build, load_class
    from udfs.annotate import AnnotateSpec

    cfg = config.annotate
    plugins = register_plugins(config)
    params = {k: dict(v) for k, v in cfg.params.items()}
    if "clips" in cfg.annotators:  # the cutting rules are the config's `clips:` section
        params["clips"] = {**params.get("clips", {}), **dataclasses.asdict(config.clips)}
    if "asr" in cfg.annotators:
        # asr's model cache, resolved against the driver's working directory (the resolved path is part of
        # its params_hash, as it always was: results stay current)
        asr = params.setdefault("asr", {})
        cache = asr.get("cache_dir", load_class("asr").default_params["cache_dir"])
        if not Path(cache).is_absolute() and "://" not in cache:
            asr["cache_dir"] = str(Path(cache).resolve())
    try:
        ordered = build(list(cfg.annotators), params)  # validates names, params and dependencies; loads no model
    except ValueError as exc:
        raise ConfigError(f"annotate config: {exc}") from None
    spec = AnnotateSpec(
        names=tuple(a.name for a in ordered),
        params={a.name: a.params for a in ordered},
        limits=DecodeLimits(max_duration_s=cfg.max_duration_s),
        strict=cfg.strict,
        gpu_fallback=cfg.gpu_fallback,
        file_timeout_s=cfg.file_timeout_s,
        run_id=run_id,
        batch_audio_s=cfg.batch_audio_s,
        marker_dir=marker_dir,
        max_worker_deaths=cfg.max_worker_deaths,
        hard_limit_grace_s=cfg.hard_limit_grace_s,
        plugins=plugins,
        storage=storage,
        cascade=cascade_for(config, ordered),
    )
    return spec, ordered


def select_work(spark, warehouse: Warehouse, ordered, retry_codes: list[str], max_attempts: int,
                cascade: Cascade | None = None):
    """One row per live audio_id that needs work: uri to read, manifest fields, `need` (annotators to
    run), `inputs` (JSON: annotator -> hash of the metadata it reads) and `current` (JSON results). A
    GATED result is current while the cascade's checks are those it was gated under."""
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
        gated = gated_params_hash(a.params_hash, cascade) if cascade and a.expensive else None
        params = F.when(cur["error_code"] == F.lit(str(ErrorCode.GATED)), F.lit(gated)).otherwise(F.lit(a.params_hash))
        stale[a.name] = (
            cur.isNull()
            | (cur["version"] != F.lit(a.version))
            | ~cur["params_hash"].eqNullSafe(params)
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

    contents = []
    for source in table_sources:
        kind = is_table(spark, source)
        if kind:
            df = list_table(spark, source, kind, config.ingest)
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


class AnnotateStage(Stage):
    """Select: the live audio lacking a current result for a configured annotator (one query, staged).
    Process: decode once and run the annotators in the executors. Commit, in chunks of about
    `annotate.commit_every_s` audio seconds: one silver MERGE each. A killed run
    loses at most the chunk in flight, and the next run selects only what is left; `--max-files` /
    `--max-hours` stop after the chunk that reaches them. The inputs: bronze, silver and the
    annotators' versions and params (a run that finds nothing to do records them)."""

    name = "annotate"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.staging = self.warehouse.staging("annotate", self.record.run_id)
        self.spec, self.ordered = annotate_spec(self.config, self.record.run_id,
                                                marker_dir=self.staging + "_inflight",
                                                storage=storage_settings(self.spark))
        self.result = AnnotateResult(0, 0, 0.0, {}, {})
        self.started = 0.0

    def inputs(self) -> Inputs:
        cfg = self.config.annotate
        return Inputs(tables=(BRONZE, SILVER), facts={
            "annotators": [(a.name, a.version, a.params_hash, list(a.meta_inputs)) for a in self.ordered],
            "retry_codes": list(cfg.retry_codes), "max_attempts": cfg.max_attempts,
            "cascade": self.spec.cascade.digest if self.spec.cascade else None})

    def unchanged(self, recorded: dict) -> AnnotateResult:
        log.info("annotate: bronze and silver unchanged since a run found nothing to do for %s",
                 list(self.spec.names))
        return self.result

    def select(self) -> Work | None:
        from pyspark.sql import functions as F

        spark, cfg = self.spark, self.config.annotate
        work = select_work(spark, self.warehouse, self.ordered, list(cfg.retry_codes), cfg.max_attempts,
                           self.spec.cascade)
        # one job answers: is there work, how much, and which audio tables hold bytes to join back in
        stats = work.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s"),
                         F.collect_set(F.when(F.col("uri").contains("#"), F.col("source"))).alias("tables")).first()
        n, total_s = int(stats["n"]), float(stats["s"] or 0.0)
        if n == 0:  # a nightly run with nothing new: no staging table (two jobs and a commit saved)
            log.info("annotate: nothing to do for %s", list(self.spec.names))
            self.settled = True
            return None
        work = _attach_table_bytes(spark, self.config, work, sorted(stats["tables"]))
        work.write.format("delta").mode("overwrite").save(self.staging + "_in")  # the lease keeps it equal to `stats`
        self.result.candidates = n
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.files_per_batch))
        self.started = time.perf_counter()
        return Work(spark.read.format("delta").load(self.staging + "_in"), n, total_s)

    def chunks(self, work: Work) -> int:
        run = self.config.run
        count = chunk_count(work.files, work.seconds, self.config.annotate.commit_every_s, run.max_files,
                            run.max_hours)
        log.info("annotate: %d files (%.2f h of audio) need work for %s; %d commit(s)", work.files,
                 work.seconds / 3600, list(self.spec.names), count)
        return count

    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        done = _annotate_chunk(self.spark, self.config, self.warehouse, self.spec, part, f"{self.staging}_{index}",
                               self.record.run_id, known=(work.files, work.seconds) if count == 1 else None)
        if done is None:
            return True
        files, seconds, metrics, version = done
        _accumulate(self.result, files, seconds, metrics)
        _progress(self.result, work.files, work.seconds, self.started, index + 1, count, version)
        run = self.config.run
        if (run.max_files and self.result.annotated >= run.max_files) or \
                (run.max_hours and self.result.audio_seconds >= run.max_hours * 3600):
            self.result.stopped_by_cap = index + 1 < count
            if self.result.stopped_by_cap:
                log.info("annotate: stopping at the run's cap; the next run continues with what is left")
            return False
        return True

    def finish(self, work: Work | None) -> AnnotateResult:
        record, result = self.record, self.result
        record.rows_in += result.annotated
        record.audio_seconds += result.audio_seconds
        for key, value in result.errors_by_code.items():
            record.errors_by_code[key] = record.errors_by_code.get(key, 0) + value
        for name, m in result.by_annotator.items():
            record.stage_seconds[f"annotate.{name}"] = round(m["seconds"], 3)
        return result

    def close(self) -> None:
        self.warehouse.remove(self.staging + "_in")
        self.warehouse.remove(self.staging + "_inflight")


def run_annotate(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> AnnotateResult:
    """`voxlake annotate`: the stage, run by the shared loop."""
    return run_stage(AnnotateStage(StageContext(spark, config, warehouse, record)))


def _annotate_chunk(spark, config: Config, warehouse: Warehouse, spec, part, staging: str, run_id: str,
                    known: tuple[int, float] | None = None):
    """Annotate one chunk in the executors and commit it: one silver MERGE.
    `known`: the chunk's (files, audio seconds) when already counted (a run of one chunk).
    Returns (files, audio seconds, metrics, silver version) or None for an empty chunk."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from udfs.annotate import make_annotate_fn

    if known is None:
        stats = part.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).first()
        known = int(stats["n"]), float(stats["s"] or 0.0)
    files, seconds = known
    if files == 0:
        return None
    parallelism = spark.sparkContext.defaultParallelism
    n_tasks = max(1, min(files, max(parallelism, math.ceil(seconds / config.annotate.target_task_s))))
    out_schema = StructType([StructField(c, StringType()) for c in spec.output_columns()])
    raw = _deal_to_tasks(spark, part, n_tasks).mapInPandas(make_annotate_fn(spec), out_schema)
    parsed = raw.select(
        "audio_id",
        F.from_json("decode", DECODE).alias("decode"),
        *[F.from_json(name, annotator_type(name)).alias(name) for name in spec.names],
        F.from_json("annotated_by", ANNOTATED_BY).alias("annotated_by"),
    )
    _retrying_worker_deaths(warehouse, spec.marker_dir,
                            lambda: parsed.write.format("delta").mode("overwrite").save(staging))
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
    with warehouse.committing("annotate.silver"):
        (
            silver.alias("t")
            .merge(result.alias("s"), "t.audio_id = s.audio_id")
            .whenMatchedUpdate(set=update)
            .whenNotMatchedInsert(values=insert)
            .execute()
        )
    version = warehouse.table_version(SILVER)
    metrics = _metrics(spark, result, spec.names)
    warehouse.remove(staging)
    return files, seconds, metrics, version


def _retrying_worker_deaths(warehouse: Warehouse, marker_dir: str | None, write) -> None:
    """Run the chunk's job (`write`); when it fails after files killed their workers, run it again.

    Spark gives a task a few attempts (`spark.task.maxFailures`, 4 in local mode's `local[*,4]`), and
    each file that kills its worker costs some of them (udfs.markers): several such files in one task
    can use up the task's attempts before each is given up. Their markers survive the failed job, so
    the next job picks up where it stopped (a given-up file is answered at once). The job runs again
    while the markers show progress (another death recorded); a failure that leaves them as they were is
    not about poison files and is raised.
    """
    seen = None
    while True:
        try:
            write()
            return
        except Exception as exc:
            now = _markers(warehouse, marker_dir)
            if not now or now == seen:
                raise
            seen = now
            log.warning("annotate: the chunk's Spark job failed (%s) with %d file(s) found in progress when "
                        "their worker died; running it again (a file that keeps killing its worker is given "
                        "up, annotate.max_worker_deaths)", type(exc).__name__, len(now))


def _markers(warehouse: Warehouse, marker_dir: str | None) -> dict:
    """The in-progress markers left by dead workers (few: files in progress when a worker died)."""
    import json

    if not marker_dir:
        return {}
    found = {}
    for path, _ in warehouse.list_files(marker_dir):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".tmp"):
            continue
        try:
            found[name] = json.loads(warehouse.read_text(path))
        except Exception:  # removed or rewritten meanwhile
            continue
    return found


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
