"""Sources → listed files: folders (recursive; any Hadoop-filesystem URI), JSON Lines manifests, and audio
tables (Parquet or Delta with a path column or a bytes column such as Hugging Face's `audio` struct).

Spark lists; the driver only plans. Used by ingest (what exists now, and the listing's digest that tells
a rerun over unchanged sources it has nothing to do) and annotate (the bytes of files that live inside a
table).
"""
from __future__ import annotations

from dataclasses import dataclass

from jobs.config import Config, ConfigError
from jobs.config.settings import IngestSettings
from jobs.spark import internals

LISTING_COLUMNS = [
    "uri", "size_bytes", "modified_at", "source", "reference_text", "language_hint", "speaker", "extra",
]
MANIFEST_KEYS = ("path", "text", "language", "speaker")


def source_uris(config: Config) -> list[str]:
    """The URIs of this run's sources and manifests, as stored in bronze.audio_files.source."""
    from udfs.files import to_uri

    return [to_uri(s) for s in (*config.manifests, *config.sources)]


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
    is recorded as EMPTY instead of vanishing. The index's paths stay in the JVM (a Dataset built
    there): they never travel through the Python driver.
    """
    from pyspark.sql import functions as F

    ext_regex = r"(?i)\.(" + "|".join(e.lstrip(".") for e in extensions) + r")$"
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(source)
    # Spark splits a file scan as if opening a file cost reading 4 MB (spark.sql.files.openCostInBytes):
    # some 32 files a task. This scan opens none (content is pruned), so those tasks would be all
    # overhead: one per core lists the same files.
    scanned = files.coalesce(max(1, spark.sparkContext.defaultParallelism)).select(
        F.col("path").alias("uri"),
        F.col("length").alias("size_bytes"),
        F.col("modificationTime").alias("modified_at"),
    )
    # inputFiles are URI-escaped java.net.URI strings (`file:///a%20b`); the scan's paths are Hadoop Paths
    # (`file:/a b`): unescape (keeping '+') and drop the empty authority so the two match
    decoded = F.expr("reflect('java.net.URLDecoder', 'decode', replace(value, '+', '%2B'), 'UTF-8')")
    listed = internals.input_files_dataframe(spark, files).select(
        F.regexp_replace(decoded, "^file:///", "file:/").alias("uri")).where(F.col("uri").rlike(ext_regex))
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
        F.lit(manifest_uri).alias("source"),
        F.substring("line", 1, 500).alias("bad_line"),
    )
    return good, bad


def list_table(spark, source: str, kind: str, cfg: IngestSettings):
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
    bytes_col = next((c for c in cfg.table_bytes_columns if c in columns), None)
    path_col = next((c for c in cfg.table_path_columns if c in columns), None)
    if bytes_col is None and path_col is None:
        raise ConfigError(
            f"audio table {source} has neither a path column ({cfg.table_path_columns}) nor a "
            f"bytes column ({cfg.table_bytes_columns}); set ingest.table_path_columns/"
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

    cfg = config.ingest
    if not config.sources and not config.manifests:
        raise ConfigError("nothing to ingest: pass --source PATH and/or --manifest FILE")
    frames, bad_frames, folders = [], [], 0
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
            folders += 1
            frames.append(
                _list_folder(spark, uri, cfg.extensions)
                .withColumn("_prio", F.lit(2000))
                .withColumn("content", F.lit(None).cast("binary"))
            )
    listing = frames[0]
    for df in frames[1:]:
        listing = listing.unionByName(df)
    if not (len(frames) == 1 and folders == 1):
        # One row per uri: a manifest's fields win over a bare folder listing of the same file, and a
        # uri a manifest or table names twice is kept once. A single folder lists each file once, so
        # it skips this shuffle.
        w = Window.partitionBy("uri").orderBy("_prio")
        listing = listing.withColumn("_rank", F.row_number().over(w)).where("_rank = 1").drop("_rank")
    listing = listing.drop("_prio")
    bad = bad_frames[0] if bad_frames else None
    for df in bad_frames[1:]:
        bad = bad.unionByName(df)
    return listing, bad


@dataclass(frozen=True)
class ListingSurvey:
    """What one pass over the listing says: files listed, listed without size/mtime, their bytes (of
    those with a size) and the listing's digest."""

    listed: int
    unstated: int
    digest: str
    bytes: int = 0


def survey(listing, bad_lines, unstated) -> ListingSurvey:
    """One job over the listing (and bad manifest lines): counts, bytes and an order-free digest.

    The digest is two independent 64-bit hashes of each row, XORed over the rows (uris are unique in
    the listing, so no two rows cancel), plus the row counts: a set digest Spark computes without
    sorting or gathering anything on the driver.
    """
    from pyspark.sql import functions as F

    rows = listing.select(
        "uri", F.coalesce(F.col("fingerprint"), F.lit("")).alias("what"), F.lit(True).alias("_file"),
        unstated.alias("_unstated"), "size_bytes")
    if bad_lines is not None:
        rows = rows.unionByName(bad_lines.select(
            "uri", F.col("bad_line").alias("what"), F.lit(False).alias("_file"), F.lit(False).alias("_unstated"),
            F.lit(None).cast("long").alias("size_bytes")))
    row = rows.agg(
        F.count(F.when(F.col("_file"), 1)).alias("listed"),
        F.coalesce(F.sum("size_bytes"), F.lit(0)).alias("bytes"),
        F.count(F.when(~F.col("_file"), 1)).alias("bad"),
        F.count(F.when(F.col("_unstated"), 1)).alias("unstated"),
        F.bit_xor(F.xxhash64(F.lit("voxlake-a"), "uri", "what", "_file")).alias("h1"),
        F.bit_xor(F.xxhash64(F.lit("voxlake-b"), "uri", "what", "_file")).alias("h2"),
    ).first()
    digest = f"{int(row['listed'])}:{int(row['bad'])}:{int(row['h1'] or 0) & (2**64 - 1):016x}" \
             f"{int(row['h2'] or 0) & (2**64 - 1):016x}"
    return ListingSurvey(int(row["listed"]), int(row["unstated"]), digest, int(row["bytes"]))
