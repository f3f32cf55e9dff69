"""Ingest: list sources with Spark, probe and hash files in executors, MERGE into bronze.audio_files.

    voxlake ingest --source PATH [--source PATH ...] [--manifest FILE] --warehouse DIR

Select: the listed files whose size, mtime or manifest fields changed since the last ingest (unchanged
files are not read again), and the files this run's sources no longer list (deleted). Process: stat,
hash and probe in the executors. Commit: one MERGE into bronze keyed by `uri` (a deleted file keeps its
row, marked `deleted_at` and NOT_FOUND); each file's outcome (pending, or quarantined with its code)
follows from bronze and is written by the run's reconcile step (jobs.warehouse.reconcile).
A rerun over the same files changes nothing; when its listing is the one bronze was last brought in line
with, it stops before the plan (the stage's inputs are unchanged: jobs.stages.stage).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass

from jobs.config import Config
from jobs.config.settings import IngestSettings
from jobs.io.sources import ListingSurvey, list_inputs, source_uris, survey
from jobs.io.storage import storage_settings
from jobs.stages.stage import Inputs, Stage, StageContext, Work, run_stage
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.store import Warehouse
from schemas.errors import ErrorCode
from schemas.tables import BRONZE

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    listed: int
    new_or_changed: int
    probed_ok: int
    quarantined: int
    errors_by_code: dict
    audio_seconds: float
    deleted: int = 0
    unchanged_since: int | None = None  # the bronze version whose listing this one matched


# ---------------------------------------------------------------- the job

def _fingerprint():
    """Hash of what, when unchanged, lets a rerun skip a file without reading it."""
    from pyspark.sql import functions as F

    return F.sha2(
        F.concat_ws(
            "|",
            F.coalesce(F.col("size_bytes").cast("string"), F.lit("")),
            F.coalesce(F.col("modified_at").cast("long").cast("string"), F.lit("")),
            F.coalesce(F.col("reference_text"), F.lit("")),
            F.coalesce(F.col("language_hint"), F.lit("")),
            F.coalesce(F.col("speaker"), F.lit("")),
            F.coalesce(F.to_json(F.map_from_entries(F.array_sort(F.map_entries(F.col("extra"))))), F.lit("")),
        ),
        256,
    )


def _unstated():
    """Listed without size or mtime (manifest and table paths): stat'ed before the plan can compare."""
    from pyspark.sql import functions as F

    return F.col("size_bytes").isNull() & F.col("content").isNull()


class IngestStage(Stage):
    """Select: survey the listing (one job: counts and the digest of what is listed), then plan it
    against bronze (one job: new or changed files, their bytes, files gone). Process: stat, hash and probe
    in the executors. Commit: bronze (the outcomes follow from it). The inputs are the listing's digest, the
    sources, the ingest settings and bronze: a rerun over an unchanged listing stops after the survey."""

    name = "ingest"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.cached: list = []  # persisted listings, released when the stage ends, however it ends
        self.storage = None
        self.bad_lines = None
        self.listing = None
        self.seen: ListingSurvey | None = None
        self.first_fill = False
        self.plan: dict = {}
        self.outcome: IngestResult | None = None

    def inputs(self) -> Inputs:
        from pyspark import StorageLevel

        self.storage = storage_settings(self.spark)
        listing, self.bad_lines = list_inputs(self.spark, self.config)
        self.cached.append(listing.persist(StorageLevel.MEMORY_AND_DISK))
        # The first job surveys the listing (and caches it): counts, and the digest that tells a rerun over
        # unchanged sources it has nothing to do. Files without size/mtime (manifest and table paths) are
        # stat'ed in executors first, so that changed files change the digest and unchanged ones are
        # skipped before any byte is read.
        self.listing = listing.withColumn("fingerprint", _fingerprint())
        self.seen = survey(self.listing, self.bad_lines, _unstated())
        if self.seen.unstated:
            from udfs.probe import make_stat_fn

            unstated = _unstated()
            stated = listing.where(~unstated).unionByName(
                listing.where(unstated).mapInPandas(make_stat_fn(self.storage), listing.schema)
            ).persist(StorageLevel.MEMORY_AND_DISK)
            self.cached.append(stated)
            self.listing = stated.withColumn("fingerprint", _fingerprint())
            self.seen = survey(self.listing, self.bad_lines, _unstated())  # stats once, here
        return Inputs(tables=(BRONZE,), scope=state_scope(self.config),
                      facts={"listing": self.seen.digest, "sources": source_uris(self.config),
                             "ingest": dataclasses.asdict(self.config.ingest)})

    def unchanged(self, recorded: dict) -> IngestResult:
        version = recorded[BRONZE.qualified]
        log.info("ingest: %d files listed, the same listing bronze@%d was brought in line with: nothing to do",
                 self.seen.listed, version)
        self.record.rows_in += self.seen.listed
        return IngestResult(self.seen.listed, 0, 0, 0, {}, 0.0, 0, unchanged_since=version)

    def select(self) -> Work | None:
        from pyspark.sql import functions as F

        spark, warehouse, record = self.spark, self.warehouse, self.record
        listing, bad_lines, listed = self.listing, self.bad_lines, self.seen.listed
        bad_uris = bad_lines.select("uri") if bad_lines is not None else None
        # A new bronze (only the commit attach created it with) has nothing to compare the listing with:
        # every listed file is to probe, none is gone, and the probe results are its first rows (an append).
        # Otherwise one job plans the run over the cached listing ⟗ bronze: the files to probe, their
        # bytes, the bronze rows no longer listed.
        self.first_fill = warehouse.is_empty_since_created(BRONZE)
        if self.first_fill:
            plan = {"todo": listed, "todo_bytes": self.seen.bytes, "gone": 0}
            todo = listing
        else:
            plan = _plan(spark, warehouse, listing, bad_uris, self.config)
            bronze = spark.read.format("delta").load(warehouse.path(BRONZE)).select("uri", "fingerprint")
            todo = listing.join(bronze, on=["uri", "fingerprint"], how="left_anti")
        self.plan = plan
        n_todo = plan["todo"]
        log.info("ingest: %d files listed, %d new or changed", listed, n_todo)

        probe_schema = BRONZE.schema
        columns = [f.name for f in probe_schema.fields]
        if n_todo:
            probed = self._probe(todo, n_todo, plan["todo_bytes"], columns)
        else:
            probed = spark.createDataFrame([], probe_schema)

        new_bad_lines = False
        if bad_lines is not None:
            bad_rows = bad_lines.select(
                "uri", "source",
                F.lit(ErrorCode.BAD_MANIFEST_ENTRY.value).alias("error_code"),
                F.concat(F.lit("manifest line is not a JSON object with a 'path': "), F.col("bad_line")).alias(
                    "error_message"
                ),
            )
            existing = spark.read.format("delta").load(warehouse.path(BRONZE)).select("uri", "error_message")
            bad_rows = bad_rows.join(existing, on=["uri", "error_message"], how="left_anti")
            probed = probed.unionByName(
                bad_rows.select(
                    *[
                        F.col(c) if c in ("uri", "source", "error_code", "error_message")
                        else F.lit(record.run_id).alias(c) if c == "ingest_run_id"
                        else F.current_timestamp().alias(c) if c == "ingested_at"
                        else F.lit(None).cast(probe_schema[c].dataType).alias(c)
                        for c in columns
                    ]
                )
            )
            new_bad_lines = not bad_rows.isEmpty()

        if plan["gone"]:
            listed_uris = listing.select("uri") if bad_uris is None else listing.select("uri").unionByName(bad_uris)
            gone = _deleted_files(spark, warehouse, listed_uris, self.config, record.run_id)
            probed = probed.select(*columns).unionByName(gone.select(*columns))
        if n_todo == 0 and plan["gone"] == 0 and not new_bad_lines:  # nothing to stage or commit
            self.settled = True
            self.outcome = IngestResult(listed, 0, 0, 0, {}, 0.0, 0)
            return None
        return Work(probed.select(*columns), n_todo)

    def _probe(self, todo, n_todo: int, todo_bytes: int, columns: list[str]):
        """The files to probe, as a lazy mapInPandas over tasks sized by their files and bytes."""
        from pyspark.sql import functions as F

        from udfs.probe import make_probe_fn

        cfg = self.config.ingest
        parts = _probe_tasks(n_todo, todo_bytes, cfg, self.spark.sparkContext.defaultParallelism)
        staged = (
            todo.repartition(parts)
            .withColumn("error_code", F.lit(None).cast("string"))
            .withColumn("ingest_run_id", F.lit(self.record.run_id))
            .withColumn("ingested_at", F.current_timestamp())
        )
        # the probe fills every header column; the rest pass through
        for col in ("audio_id", "container", "codec", "error_message"):
            staged = staged.withColumn(col, F.lit(None).cast("string"))
        for col in ("sample_rate", "channels", "bit_depth"):
            staged = staged.withColumn(col, F.lit(None).cast("int"))
        staged = staged.withColumn("duration_s", F.lit(None).cast("double")).withColumn(
            "deleted_at", F.lit(None).cast("timestamp"))
        return staged.mapInPandas(
            make_probe_fn(cfg.max_file_bytes, columns + ["content"], self.storage), _with_content(BRONZE.schema)
        ).drop("content")

    def progress_label(self, index: int, count: int, work: Work) -> str:
        return f"ingest: probing {work.files} files"

    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        from delta.tables import DeltaTable
        from pyspark.sql import Observation

        spark, warehouse, record = self.spark, self.warehouse, self.record
        # Stage the probe results in Delta before merging: they are computed against bronze (the
        # anti-join), and a cached plan over bronze is invalidated by the MERGE into it, which would
        # recompute it against the new bronze. Staging also keeps the expensive probe from running twice.
        # A first fill computes nothing against bronze: its probe results are appended to bronze directly
        # (a blind append, safe under the warehouse lease), and read back from there.
        staging = warehouse.staging("ingest", record.run_id)
        counted = Observation("ingest")  # the outcome counts, taken by the write itself (no second pass)
        observed = part.observe(counted, *_outcome_counts()).write.format("delta")
        if self.first_fill:
            with warehouse.committing("ingest.bronze"):
                observed.mode("append").save(warehouse.path(BRONZE))
        else:
            observed.mode("overwrite").save(staging)
        counts = counted.get
        errors = {code.value: int(counts[code.value]) for code in ErrorCode if counts[code.value]}
        failed, deleted, ok = int(counts["failed"]), int(counts["deleted"]), int(counts["ok"])
        audio_s = float(counts["audio_s"] or 0.0)

        if not self.first_fill:
            if ok or failed or deleted:
                probed = spark.read.format("delta").load(staging)
                with warehouse.committing("ingest.bronze"):
                    (
                        DeltaTable.forPath(spark, warehouse.path(BRONZE)).alias("t")
                        .merge(probed.alias("s"), "t.uri = s.uri")
                        .whenMatchedUpdateAll(condition="t.fingerprint IS DISTINCT FROM s.fingerprint "
                                                        "OR t.error_message IS DISTINCT FROM s.error_message")
                        .whenNotMatchedInsertAll()
                        .execute()
                    )
            warehouse.remove(staging)
        # the files' outcomes follow from bronze: the run's reconcile writes them (jobs.warehouse.reconcile)
        # bronze now holds every listed file with this listing's fingerprint (and every bad line, every
        # deletion): a rerun over the same listing would plan nothing
        self.settled = True
        record.rows_out += ok
        record.rows_quarantined += failed
        record.audio_seconds += audio_s
        for code, n in errors.items():
            record.errors_by_code[code] = record.errors_by_code.get(code, 0) + n
        if deleted:
            log.info("ingest: %d files are no longer listed by their source (marked deleted)", deleted)
        self.outcome = IngestResult(self.seen.listed, work.files, ok, failed, errors, audio_s, deleted)
        return True

    def finish(self, work: Work | None) -> IngestResult:
        self.record.rows_in += self.seen.listed
        return self.outcome

    def close(self) -> None:
        for df in self.cached:
            df.unpersist()


def state_scope(config: Config) -> str:
    """One record of ingest's inputs per source set (rewritten by each run over it, so records do not
    pile up)."""
    return hashlib.sha256(json.dumps(source_uris(config)).encode()).hexdigest()[:32]


def run_ingest(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> IngestResult:
    """`voxlake ingest`: the stage, run by the shared loop."""
    return run_stage(IngestStage(StageContext(spark, config, warehouse, record)))


def _outcome_counts() -> list:
    """Aggregates over the rows an ingest commits: files gone (deleted), probed fine and their audio
    seconds, failed (not deleted) in all and by error code (a fixed list: the enumeration)."""
    from pyspark.sql import functions as F

    gone = F.col("deleted_at").isNotNull()
    fine = F.col("error_code").isNull()
    failed = ~gone & ~fine
    return [
        F.count(F.when(gone, 1)).alias("deleted"),
        F.count(F.when(fine, 1)).alias("ok"),
        F.sum(F.when(fine, F.col("duration_s"))).alias("audio_s"),
        F.count(F.when(failed, 1)).alias("failed"),
        *[F.count(F.when(failed & (F.col("error_code") == code.value), 1)).alias(code.value) for code in ErrorCode],
    ]


def _probe_tasks(n_files: int, n_bytes: int, cfg: IngestSettings, cores: int) -> int:
    """How many tasks probe and hash `n_files` files of `n_bytes` bytes in all.

    Each task has a fixed cost (a Python worker round trip) far above what a small file costs to open,
    hash and probe: many small tasks spend most of the stage on that fixed cost (BENCHMARKS.md,
    "Ingest"). So tasks are as large as the bounds allow
    (`files_per_task` files, `bytes_per_task` bytes: a retried task redoes little, skew stays small),
    and never fewer than one per core while there are files to share.
    """
    by_files = math.ceil(n_files / max(1, cfg.files_per_task))
    by_bytes = math.ceil(n_bytes / max(1, cfg.bytes_per_task))
    return max(1, by_files, by_bytes, min(n_files, cores))


def _with_content(schema):
    from pyspark.sql.types import BinaryType, StructField, StructType

    return StructType(list(schema.fields) + [StructField("content", BinaryType(), True)])


def _plan(spark, warehouse: Warehouse, listing, bad_uris, config: Config) -> dict:
    """One job over listing ⟗ bronze: files new or changed (no bronze row with the same uri and
    fingerprint), their bytes, and the files gone (see _deleted_files)."""
    from pyspark.sql import functions as F

    listed = listing.select("uri", "fingerprint", "size_bytes", F.lit(True).alias("_listed"))
    if bad_uris is not None:  # bad manifest lines have bronze rows too: listed, never probed
        listed = listed.unionByName(bad_uris.select(
            "uri", F.lit(None).cast("string").alias("fingerprint"), F.lit(None).cast("long").alias("size_bytes"),
            F.lit(True).alias("_listed")))
    bronze = spark.read.format("delta").load(warehouse.path(BRONZE)).select(
        "uri", F.col("fingerprint").alias("_had"), "deleted_at", "source")
    is_file = F.col("_listed") & F.col("fingerprint").isNotNull()
    is_todo = is_file & ~F.coalesce(F.col("_had") == F.col("fingerprint"), F.lit(False))
    row = listed.join(bronze, "uri", "full_outer").agg(
        F.count(F.when(is_todo, 1)).alias("todo"),
        F.coalesce(F.sum(F.when(is_todo, F.col("size_bytes"))), F.lit(0)).alias("todo_bytes"),
        F.count(F.when(F.col("_listed").isNull() & F.col("deleted_at").isNull()
                       & F.col("source").isin(source_uris(config)), 1)).alias("gone"),
    ).first()
    return {k: int(row[k]) for k in ("todo", "todo_bytes", "gone")}


def _deleted_files(spark, warehouse: Warehouse, listed_uris, config: Config, run_id: str):
    """bronze rows of this run's sources that the listing no longer has: marked deleted (NOT_FOUND).

    Only sources listed in this run are compared, so a run over one folder never deletes another's
    files. The fingerprint is cleared, so a file that comes back is probed again.
    """
    from pyspark.sql import functions as F

    sources = source_uris(config)
    bronze = spark.read.format("delta").load(warehouse.path(BRONZE))
    gone = bronze.where(F.col("deleted_at").isNull() & F.col("source").isin(sources)).join(
        listed_uris, "uri", "left_anti")
    return (
        gone.withColumn("error_code", F.lit(str(ErrorCode.NOT_FOUND)))
        .withColumn("error_message", F.concat(F.lit("no longer listed by its source "), F.col("source")))
        .withColumn("fingerprint", F.lit(None).cast("string"))
        .withColumn("ingest_run_id", F.lit(run_id))
        .withColumn("deleted_at", F.current_timestamp())
    )
