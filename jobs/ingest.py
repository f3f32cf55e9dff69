"""Ingest: list sources with Spark, probe and hash files in executors, MERGE into bronze.audio_files.

    voxlake ingest --source PATH [--source PATH ...] [--manifest FILE] --warehouse DIR
    spark-submit jobs/ingest.py  (same flags)

Sources: folders (recursive; any Hadoop-filesystem URI), JSON Lines manifests, and audio tables (Parquet
or Delta with a path column or a bytes column such as Hugging Face's `audio` struct). Incremental: a file
whose size, mtime and manifest fields are unchanged since the last ingest is not read again, and the
MERGE is keyed by `uri`, so a rerun over the same files changes nothing.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # spark-submit jobs/ingest.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.config import Config, ConfigError
from jobs.ledger import RunRecord
from jobs.warehouse import Warehouse
from schemas.errors import ErrorCode
from schemas.tables import BRONZE, QUARANTINE

log = logging.getLogger(__name__)

LISTING_COLUMNS = [
    "uri", "size_bytes", "modified_at", "source", "reference_text", "language_hint", "speaker", "extra",
]
MANIFEST_KEYS = ("path", "text", "language", "speaker")


@dataclass
class IngestResult:
    listed: int
    new_or_changed: int
    probed_ok: int
    quarantined: int
    errors_by_code: dict
    audio_seconds: float


# ---------------------------------------------------------------- listing (driver plans, executors list)

def is_table(spark, path: str) -> str | None:
    """'delta' or 'parquet' when the source is an audio table rather than a folder of files."""
    from delta.tables import DeltaTable

    if DeltaTable.isDeltaTable(spark, path):
        return "delta"
    if path.rstrip("/").endswith(".parquet"):
        return "parquet"
    return None


def _list_folder(spark, source: str, extensions: list[str]):
    """Spark lists the folder (binaryFile, content pruned: no bytes are read).

    Spark's file scan skips zero-byte files, but its file index (inputFiles) still lists them: files
    the scan did not return get their size and mtime from a stat in the executors, so an empty file
    is recorded as EMPTY instead of vanishing.
    """
    from urllib.parse import unquote

    from pyspark.sql import functions as F

    ext_regex = r"(?i)\.(" + "|".join(e.lstrip(".") for e in extensions) + r")$"
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(source)
    scanned = files.select(
        F.col("path").alias("uri"),
        F.col("length").alias("size_bytes"),
        F.col("modificationTime").alias("modified_at"),
    )
    indexed = [_hadoop_uri(unquote(p)) for p in files.inputFiles()]
    listed = spark.createDataFrame([(u,) for u in indexed], "uri string").where(F.col("uri").rlike(ext_regex))
    return listed.join(scanned, on="uri", how="left").select(
        "uri",
        "size_bytes",
        "modified_at",
        F.lit(source).alias("source"),
        F.lit(None).cast("string").alias("reference_text"),
        F.lit(None).cast("string").alias("language_hint"),
        F.lit(None).cast("string").alias("speaker"),
        F.lit(None).cast("map<string,string>").alias("extra"),
    )


def _hadoop_uri(uri: str) -> str:
    """`file:///x` (java.net.URI form) -> `file:/x` (Hadoop Path form, what the scan's path column uses)."""
    return "file:" + uri[len("file://"):] if uri.startswith("file:///") else uri


def _manifest_uri_column(path_col, base_dir: str):
    """Resolve manifest paths: URIs and absolute paths as given, relative ones against the manifest."""
    from pyspark.sql import functions as F

    return (
        F.when(path_col.rlike(r"^[A-Za-z][A-Za-z0-9+.-]+:"), path_col)
        .when(path_col.startswith("/"), F.concat(F.lit("file:"), path_col))
        .otherwise(F.concat(F.lit(base_dir.rstrip("/") + "/"), path_col))
    )


def _list_manifest(spark, manifest: str):
    """A JSON Lines manifest. Lines that are not JSON objects with a `path` become error rows."""
    from pyspark.sql import functions as F

    from udfs.files import to_uri

    manifest_uri = to_uri(manifest)
    base_dir = manifest_uri.rsplit("/", 1)[0]
    lines = spark.read.text(manifest_uri).rdd.zipWithIndex().map(lambda t: (t[0][0], t[1] + 1))
    df = spark.createDataFrame(lines, "line string, line_no long").where(F.trim("line") != "")
    parsed = df.withColumn("m", F.from_json("line", "map<string,string>"))
    good = parsed.where(F.col("m").isNotNull() & F.col("m")["path"].isNotNull())
    bad = parsed.where(F.col("m").isNull() | F.col("m")["path"].isNull())
    keys = F.array(*[F.lit(k) for k in MANIFEST_KEYS])
    good = good.select(
        _manifest_uri_column(F.col("m")["path"], base_dir).alias("uri"),
        F.lit(None).cast("long").alias("size_bytes"),
        F.lit(None).cast("timestamp").alias("modified_at"),
        F.lit(manifest_uri).alias("source"),
        F.col("m")["text"].alias("reference_text"),
        F.col("m")["language"].alias("language_hint"),
        F.col("m")["speaker"].alias("speaker"),
        F.map_filter("m", lambda k, v: ~F.array_contains(keys, k)).alias("extra"),
    )
    bad = bad.select(
        F.concat(F.lit(manifest_uri + "#line="), F.col("line_no").cast("string")).alias("uri"),
        F.substring("line", 1, 500).alias("bad_line"),
    )
    return good, bad


def list_table(spark, source: str, kind: str, cfg: dict):
    """An audio table: rows name files (a path column) or carry bytes (a bytes column)."""
    from pyspark.sql import functions as F

    df = spark.read.format(kind).load(source)
    flat = {f.name for f in df.schema.fields}
    nested = {
        f"{f.name}.{sub.name}"
        for f in df.schema.fields
        if hasattr(f.dataType, "fields")
        for sub in f.dataType.fields
    }
    columns = flat | nested
    bytes_col = next((c for c in cfg.get("table_bytes_columns", []) if c in columns), None)
    path_col = next((c for c in cfg.get("table_path_columns", []) if c in columns), None)
    if bytes_col is None and path_col is None:
        raise ConfigError(
            f"audio table {source} has neither a path column ({cfg.get('table_path_columns')}) nor a "
            f"bytes column ({cfg.get('table_bytes_columns')}); set ingest.table_path_columns/"
            "table_bytes_columns"
        )
    text = F.col("text").cast("string") if "text" in flat else F.lit(None).cast("string")
    lang = F.col("language").cast("string") if "language" in flat else F.lit(None).cast("string")
    spk = F.col("speaker").cast("string") if "speaker" in flat else F.lit(None).cast("string")
    common = [
        F.lit(source).alias("source"),
        text.alias("reference_text"),
        lang.alias("language_hint"),
        spk.alias("speaker"),
        F.lit(None).cast("map<string,string>").alias("extra"),
    ]
    if bytes_col is not None:
        key = F.col(path_col) if path_col else F.sha2(F.col(bytes_col), 256)
        return df.select(
            F.concat(F.lit(source.rstrip("/") + "#"), key.cast("string")).alias("uri"),
            F.length(F.col(bytes_col)).cast("long").alias("size_bytes"),
            F.lit(None).cast("timestamp").alias("modified_at"),
            *common,
            F.col(bytes_col).alias("content"),
        )
    return df.select(
        _manifest_uri_column(F.col(path_col).cast("string"), source.rsplit("/", 1)[0]).alias("uri"),
        F.lit(None).cast("long").alias("size_bytes"),
        F.lit(None).cast("timestamp").alias("modified_at"),
        *common,
    )


def list_inputs(spark, config: Config):
    """All listed inputs as (files DataFrame, bad manifest lines DataFrame)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from udfs.files import to_uri

    cfg = config.section("ingest")
    if not config.sources and not config.manifests:
        raise ConfigError("nothing to ingest: pass --source PATH and/or --manifest FILE")
    frames, bad_frames = [], []
    for priority, manifest in enumerate(config.manifests):
        good, bad = _list_manifest(spark, manifest)
        frames.append(good.withColumn("_prio", F.lit(priority)).withColumn("content", F.lit(None).cast("binary")))
        bad_frames.append(bad)
    for source in config.sources:
        uri = to_uri(source)
        kind = is_table(spark, uri)
        if kind:
            df = list_table(spark, uri, kind, cfg)
            if "content" not in df.columns:
                df = df.withColumn("content", F.lit(None).cast("binary"))
            frames.append(df.withColumn("_prio", F.lit(1000)))
        else:
            frames.append(
                _list_folder(spark, uri, cfg["extensions"])
                .withColumn("_prio", F.lit(2000))
                .withColumn("content", F.lit(None).cast("binary"))
            )
    listing = frames[0]
    for df in frames[1:]:
        listing = listing.unionByName(df)
    # One row per uri: a manifest's fields win over a bare folder listing of the same file.
    w = Window.partitionBy("uri").orderBy("_prio")
    listing = listing.withColumn("_rank", F.row_number().over(w)).where("_rank = 1").drop("_rank", "_prio")
    bad = bad_frames[0] if bad_frames else None
    for df in bad_frames[1:]:
        bad = bad.unionByName(df)
    return listing, bad


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


def run_ingest(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> IngestResult:
    from delta.tables import DeltaTable
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from udfs.probe import make_probe_fn

    cfg = config.section("ingest")
    listing, bad_lines = list_inputs(spark, config)

    # Files without size/mtime (manifest and table paths) are stat'ed in executors first, so that
    # unchanged files can be skipped before any byte is read.
    needs_stat = listing.where(F.col("size_bytes").isNull() & F.col("content").isNull())
    if not needs_stat.isEmpty():
        from udfs.probe import make_stat_fn

        listing = listing.where(~(F.col("size_bytes").isNull() & F.col("content").isNull())).unionByName(
            needs_stat.mapInPandas(make_stat_fn(), listing.schema)
        )
    listing = listing.withColumn("fingerprint", _fingerprint()).persist(StorageLevel.MEMORY_AND_DISK)
    listed = listing.count()

    bronze = spark.read.format("delta").load(warehouse.path(BRONZE)).select("uri", "fingerprint")
    todo = listing.join(bronze, on=["uri", "fingerprint"], how="left_anti")
    n_todo = todo.count()
    log.info("ingest: %d files listed, %d new or changed", listed, n_todo)

    probe_schema = BRONZE.schema
    columns = [f.name for f in probe_schema.fields]
    if n_todo:
        parts = max(1, math.ceil(n_todo / int(cfg.get("files_per_task", 64))))
        staged = (
            todo.repartition(parts)
            .withColumn("error_code", F.lit(None).cast("string"))
            .withColumn("ingest_run_id", F.lit(record.run_id))
            .withColumn("ingested_at", F.current_timestamp())
        )
        # the probe fills every header column; the rest pass through
        for col in ("audio_id", "container", "codec", "error_message"):
            staged = staged.withColumn(col, F.lit(None).cast("string"))
        for col in ("sample_rate", "channels", "bit_depth"):
            staged = staged.withColumn(col, F.lit(None).cast("int"))
        staged = staged.withColumn("duration_s", F.lit(None).cast("double"))
        probed = staged.mapInPandas(
            make_probe_fn(int(cfg["max_file_bytes"]), columns + ["content"]), _with_content(probe_schema)
        ).drop("content")
    else:
        probed = spark.createDataFrame([], probe_schema)

    if bad_lines is not None:
        bad_rows = bad_lines.select(
            "uri",
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
                    F.col(c) if c in ("uri", "error_code", "error_message")
                    else F.lit(record.run_id).alias(c) if c == "ingest_run_id"
                    else F.current_timestamp().alias(c) if c == "ingested_at"
                    else F.lit(None).cast(probe_schema[c].dataType).alias(c)
                    for c in columns
                ]
            )
        )

    # Stage the probe results in Delta before merging: `probed` is computed against bronze (the
    # anti-join), and a cached plan over bronze is invalidated by the MERGE into it, which would
    # recompute it against the new bronze. Staging also keeps the expensive probe from running twice.
    staging = warehouse.staging("ingest", record.run_id)
    probed.select(*columns).write.format("delta").mode("overwrite").save(staging)
    probed = spark.read.format("delta").load(staging)
    stats = probed.groupBy("error_code").agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).collect()
    errors = {r["error_code"]: int(r["n"]) for r in stats if r["error_code"] is not None}
    ok = sum(int(r["n"]) for r in stats if r["error_code"] is None)
    audio_s = sum(float(r["s"] or 0.0) for r in stats if r["error_code"] is None)

    if ok or errors:
        (
            DeltaTable.forPath(spark, warehouse.path(BRONZE)).alias("t")
            .merge(probed.alias("s"), "t.uri = s.uri")
            .whenMatchedUpdateAll(condition="t.fingerprint IS DISTINCT FROM s.fingerprint "
                                            "OR t.error_message IS DISTINCT FROM s.error_message")
            .whenNotMatchedInsertAll()
            .execute()
        )
        _merge_quarantine(spark, warehouse, probed, record.run_id)
    listing.unpersist()
    warehouse.remove(staging)
    record.rows_in += listed
    record.rows_out += ok
    record.rows_quarantined += sum(errors.values())
    record.audio_seconds += audio_s
    for code, n in errors.items():
        record.errors_by_code[code] = record.errors_by_code.get(code, 0) + n
    return IngestResult(listed, n_todo, ok, sum(errors.values()), errors, audio_s)


def _with_content(schema):
    from pyspark.sql.types import BinaryType, StructField, StructType

    return StructType(list(schema.fields) + [StructField("content", BinaryType(), True)])


def _merge_quarantine(spark, warehouse: Warehouse, probed, run_id: str) -> None:
    """Ingest failures enter ops.quarantine; a file that now probes fine leaves it."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    updates = probed.select(
        "uri",
        "audio_id",
        F.lit("ingest").alias("stage"),
        "error_code",
        F.col("error_message").alias("reason"),
        F.lit(None).cast("array<string>").alias("failed_expectations"),
        F.lit(None).cast("string").alias("recipe_hash"), F.lit(None).cast("timestamp").alias("annotated_at"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("first_seen"),
        F.current_timestamp().alias("last_seen"),
    )
    (
        DeltaTable.forPath(spark, warehouse.path(QUARANTINE)).alias("t")
        .merge(updates.alias("s"), "t.uri = s.uri AND t.stage = s.stage")
        .whenMatchedDelete(condition="s.error_code IS NULL")
        .whenMatchedUpdate(
            condition="s.error_code IS NOT NULL",
            set={
                "audio_id": "s.audio_id", "error_code": "s.error_code", "reason": "s.reason",
                "run_id": "s.run_id", "last_seen": "s.last_seen",
            },
        )
        .whenNotMatchedInsertAll(condition="s.error_code IS NOT NULL")
        .execute()
    )


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["ingest", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
