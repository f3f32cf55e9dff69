"""Spark schemas of the voxlake tables (the table contract: docs/architecture.md, "Tables").

Column names here are what users' SQL relies on: change them only on purpose, and say so in the README.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _f(name, dtype, nullable=True, comment=None):
    meta = {"comment": comment} if comment else {}
    return StructField(name, dtype, nullable, meta)


BRONZE_AUDIO_FILES = StructType(
    [
        _f("uri", StringType(), False, "where the file is (the source listing's path, or table#key)"),
        _f("audio_id", StringType(), True, "sha256 of the file bytes; null only when unreadable"),
        _f("size_bytes", LongType()),
        _f("modified_at", TimestampType()),
        _f("source", StringType(), True, "the --source or --manifest it was listed from"),
        _f("container", StringType()),
        _f("codec", StringType()),
        _f("sample_rate", IntegerType()),
        _f("channels", IntegerType()),
        _f("bit_depth", IntegerType()),
        _f("duration_s", DoubleType(), True, "from the header"),
        _f("reference_text", StringType(), True, "manifest 'text'"),
        _f("language_hint", StringType(), True, "manifest 'language'"),
        _f("speaker", StringType(), True, "manifest 'speaker'"),
        _f("extra", MapType(StringType(), StringType()), True, "other manifest keys, values as JSON"),
        _f("fingerprint", StringType(), True, "hash of size, mtime and manifest fields: unchanged => skipped"),
        _f("error_code", StringType(), True, "null when the file probed fine"),
        _f("error_message", StringType()),
        _f("ingest_run_id", StringType()),
        _f("ingested_at", TimestampType()),
        _f("deleted_at", TimestampType(), True, "when a run over its source no longer listed it"),
    ]
)

OPS_FILE_STATE = StructType(
    [
        _f("uri", StringType(), False),
        _f("audio_id", StringType(), True, "the bytes the decision is about (null: unreadable)"),
        _f("stage", StringType(), False, "the stage that decided: ingest | annotate | publish"),
        _f("status", StringType(), False, "curated | quarantined | pending (listed, not yet judged)"),
        _f("error_code", StringType()),
        _f("reason", StringType()),
        _f("failed_expectations", ArrayType(StringType())),
        _f("recipe_hash", StringType(), True, "publish stage: the recipe that judged it"),
        _f("annotated_at", TimestampType(), True, "publish stage: the silver row version it judged"),
        _f("decision_key", StringType(), True,
           "publish stage: hash of recipe, silver version and the audio's URIs and manifest fields"),
        _f("run_id", StringType()),
        _f("first_seen", TimestampType(), True, "when the file entered this status"),
        _f("last_seen", TimestampType(), True, "when a run last wrote this row"),
    ]
)

OPS_CLIP_STATE = StructType(
    [
        _f("clip_id", StringType(), False),
        _f("audio_id", StringType(), False),
        _f("uri", StringType(), True, "one of the URIs holding the audio"),
        _f("start_s", DoubleType()),
        _f("end_s", DoubleType()),
        _f("duration_s", DoubleType()),
        _f("status", StringType(), False, "curated (in gold.clips) | quarantined"),
        _f("failed_expectations", ArrayType(StringType()), True, "the clip's and its file's"),
        _f("recipe_hash", StringType()),
        _f("clip_params_hash", StringType(), True, "the clip rules that cut it"),
        _f("run_id", StringType()),
        _f("decided_at", TimestampType()),
    ]
)

OPS_RUNS = StructType(
    [
        _f("run_id", StringType(), False),
        _f("job", StringType(), False),
        _f("started_at", TimestampType()),
        _f("finished_at", TimestampType()),
        _f("status", StringType(), True, "succeeded | blocked | failed"),
        _f("rows_in", LongType()),
        _f("rows_out", LongType()),
        _f("rows_quarantined", LongType()),
        _f("audio_seconds", DoubleType()),
        _f("stage_seconds", MapType(StringType(), DoubleType())),
        _f("validation_success", BooleanType()),
        _f("delta_versions", MapType(StringType(), LongType())),
        _f("errors_by_code", MapType(StringType(), LongType())),
        _f("config_hash", StringType()),
        _f("code_version", StringType()),
        _f("message", StringType()),
    ]
)


@dataclass(frozen=True)
class TableSpec:
    database: str
    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"


BRONZE = TableSpec("bronze", "audio_files", BRONZE_AUDIO_FILES)
FILE_STATE = TableSpec("ops", "file_state", OPS_FILE_STATE)
RUNS = TableSpec("ops", "runs", OPS_RUNS)
CLIP_STATE = TableSpec("ops", "clip_state", OPS_CLIP_STATE)

ALL_TABLES: tuple[TableSpec, ...] = (BRONZE, FILE_STATE, RUNS)

SILVER_LINKS = StructType(
    [
        _f("audio_id", StringType(), False),
        _f("speaker_cluster_id", StringType(), True,
           "the smallest audio_id of the files whose voices `voxlake link` joined (null: no speaker embedding)"),
        _f("duplicate_group_id", StringType(), True,
           "the smallest audio_id of the recordings this one copies (itself when it copies none)"),
        _f("duplicate_of", StringType(), True, "the copy of its group kept for gold; null for that copy itself"),
        _f("duplicate_group_size", LongType()),
        _f("linked_at", TimestampType()),
    ]
)
LINKS = TableSpec("silver", "links", SILVER_LINKS)
