"""Publish: validate silver rows with the GX suites, then curated rows → gold, rejected rows → quarantine.

    voxlake publish --warehouse DIR [--config FILE]
    spark-submit jobs/publish.py  (same flags)

The batch is every silver row (decoded fine) not yet judged under this recipe at its current version.
Row-level failures go to ops.quarantine with the failed expectation names; a row that passes later
(a better model, a changed recipe) moves to gold and leaves quarantine, never both. A failed critical
(table-level) check publishes nothing: gold stays exactly as it was and the command exits 1. Each
publish is one MERGE (one atomic Delta commit) per table; a rerun with nothing new commits nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # spark-submit jobs/publish.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.config import Config
from jobs.ledger import RunRecord
from jobs.warehouse import Warehouse
from schemas.errors import ErrorCode
from schemas.tables import BRONZE, QUARANTINE

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    candidates: int = 0
    published: int = 0
    quarantined: int = 0
    blocked: bool = False
    failed_checks: list = field(default_factory=list)
    rejected_by: dict = field(default_factory=dict)  # expectation name -> rows
    docs_path: str | None = None


def recipe_hash(config: Config) -> str:
    from expectations.gate import SUITES_DIR

    cfg = config.section("publish")
    suites = "".join((SUITES_DIR / f).read_text() for f in ("rows.yaml", "table.yaml"))
    blob = json.dumps({"recipe": cfg.get("recipe"), "bands": cfg.get("quality_bands"), "suites": suites},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def candidates(spark, warehouse: Warehouse, config: Config, rhash: str):
    """Flat rows (the gold columns) for silver rows not yet judged under this recipe and version."""
    from pyspark.sql import functions as F

    from schemas.gold import UTTERANCES
    from schemas.silver import SILVER

    bands = config.section("publish").get("quality_bands") or {"high": 3.5, "medium": 3.0}
    bronze = spark.read.format("delta").load(warehouse.path(BRONZE)).where("error_code IS NULL").groupBy(
        "audio_id").agg(F.max("sample_rate").alias("sample_rate"), F.max("channels").alias("channels"),
                        F.max("speaker").alias("speaker"), F.max("reference_text").alias("reference_text"))
    s = spark.read.format("delta").load(warehouse.path(SILVER)).where("decode.status = 'ok'")
    flat = s.join(bronze, "audio_id", "left").select(
        "audio_id", "uri",
        F.col("asr.language").alias("language"),
        F.col("decode.duration_s").alias("duration_s"),
        "sample_rate", "channels",
        F.col("asr.language_prob").alias("language_prob"),
        F.when(F.length(F.trim("asr.text")) > 0, F.trim("asr.text")).alias("transcript"),
        "reference_text", "speaker",
        F.col("levels.lufs").alias("lufs"), F.col("levels.peak_dbfs").alias("peak_dbfs"),
        F.col("levels.rms_dbfs").alias("rms_dbfs"), F.col("levels.clipping_ratio").alias("clipping_ratio"),
        F.col("snr.snr_db").alias("snr_db"), F.col("vad.speech_ratio").alias("speech_ratio"),
        F.col("vad.speech_s").alias("speech_s"), F.col("bandwidth.effective_hz").alias("effective_hz"),
        F.col("pitch.f0_median_hz").alias("f0_median_hz"),
        F.col("quality.ovrl").alias("dnsmos_ovrl"), F.col("quality.sig").alias("dnsmos_sig"),
        F.col("quality.bak").alias("dnsmos_bak"), F.col("quality.p808").alias("dnsmos_p808"),
        F.when(F.col("quality.ovrl") >= bands["high"], "high")
         .when(F.col("quality.ovrl") >= bands["medium"], "medium")
         .when(F.col("quality.ovrl").isNotNull(), "low").alias("quality_band"),
        F.col("text.words_per_s").alias("words_per_s"), F.col("text.wer").alias("wer"),
        F.col("text.has_pii").alias("has_pii"), F.col("text.hallucination").alias("hallucination"),
        F.col("text.language_agrees").alias("language_agrees"),
        F.col("asr.model").alias("asr_model"), F.col("asr.model_sha256").alias("asr_model_sha256"),
        F.lit(rhash).alias("recipe_hash"),
        F.col("updated_at").alias("annotated_at"),
    )
    gold = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select(
        "audio_id", "recipe_hash", "annotated_at")
    judged = spark.read.format("delta").load(warehouse.path(QUARANTINE)).where("stage = 'publish'").select(
        "audio_id", "recipe_hash", "annotated_at")
    decided = gold.unionByName(judged).distinct()
    return flat.join(decided, ["audio_id", "recipe_hash", "annotated_at"], "left_anti")


def run_publish(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> PublishResult:
    from pyspark.sql import functions as F

    from expectations.gate import Gate, load_suite_spec

    cfg = config.section("publish")
    rhash = recipe_hash(config)
    staging = warehouse.staging("publish", record.run_id)
    # stage the batch: everything below reads one fixed snapshot of it
    candidates(spark, warehouse, config, rhash).write.format("delta").mode("overwrite").save(staging)
    batch = spark.read.format("delta").load(staging)
    n = batch.count()
    result = PublishResult(candidates=n)
    if n == 0:
        log.info("publish: nothing new to judge")
        warehouse.remove(staging)
        return result

    values = {"recipe": cfg.get("recipe") or {}, "critical": cfg.get("critical") or {}}
    gate = Gate(warehouse.root)
    rows = gate.validate_rows(batch, load_suite_spec("rows", values))
    failures = rows.row_failures
    decisions = spark.createDataFrame(
        [(k, sorted(set(v))) for k, v in failures.items()], "audio_id string, failed_expectations array<string>"
    )
    judged = batch.join(decisions, "audio_id", "left").withColumn(
        "rejected", F.when(F.col("failed_expectations").isNotNull(), 1).otherwise(0))
    table = gate.validate_table(judged, load_suite_spec("table", values))
    result.docs_path = table.docs_path
    for names in failures.values():
        for name in set(names):
            result.rejected_by[name] = result.rejected_by.get(name, 0) + 1
    record.validation_success = table.success
    if not table.success:
        result.blocked, result.failed_checks = True, table.failed
        record.message = "critical checks failed, nothing published: " + json.dumps(table.failed, default=str)
        log.error("publish blocked: %s", record.message)
        warehouse.remove(staging)
        return result

    _merge_gold(spark, warehouse, judged, record.run_id)
    _merge_quarantine(spark, warehouse, judged, record.run_id)
    result.quarantined = len(failures)
    result.published = n - len(failures)
    record.rows_out += result.published
    record.rows_quarantined += result.quarantined
    for name, count in result.rejected_by.items():
        record.errors_by_code[f"{ErrorCode.EXPECTATION_FAILED}:{name}"] = count
    warehouse.remove(staging)
    return result


def _merge_gold(spark, warehouse: Warehouse, judged, run_id: str) -> None:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from schemas.gold import SEGMENTS, UTTERANCES, UTTERANCES_SCHEMA
    from schemas.silver import SILVER

    cols = [f.name for f in UTTERANCES_SCHEMA.fields]
    source = judged.withColumn("published_at", F.current_timestamp()).withColumn(
        "publish_run_id", F.lit(run_id)).select(*cols, "rejected")
    (
        DeltaTable.forPath(spark, warehouse.path(UTTERANCES)).alias("t")
        .merge(source.alias("s"), "t.audio_id = s.audio_id")
        .whenMatchedDelete(condition="s.rejected = 1")
        .whenMatchedUpdate(condition="s.rejected = 0", set={c: f"s.{c}" for c in cols})
        .whenNotMatchedInsert(condition="s.rejected = 0", values={c: f"s.{c}" for c in cols})
        .execute()
    )
    # segments of this batch: replace those of passed rows, drop those of rejected rows
    silver = spark.read.format("delta").load(warehouse.path(SILVER)).select("audio_id", "asr")
    passed = judged.where("rejected = 0").select("audio_id", "language")
    segments = passed.join(silver, "audio_id").select(
        "audio_id", "language", F.explode("asr.segments").alias("seg")
    ).select(
        "audio_id", F.col("seg.id").alias("segment_id"), "language", F.col("seg.start_s").alias("start_s"),
        F.col("seg.end_s").alias("end_s"), F.col("seg.text").alias("text"),
        F.col("seg.avg_logprob").alias("avg_logprob"), F.col("seg.no_speech_prob").alias("no_speech_prob"),
        F.col("seg.compression_ratio").alias("compression_ratio"),
        F.col("seg.temperature").alias("temperature"), F.col("seg.words").alias("words"),
    )
    batch_ids = [r["audio_id"] for r in judged.select("audio_id").collect()]
    id_list = ", ".join("'" + i.replace("'", "") + "'" for i in batch_ids)
    seg_cols = [f.name for f in SEGMENTS.schema.fields]
    (
        DeltaTable.forPath(spark, warehouse.path(SEGMENTS)).alias("t")
        .merge(segments.alias("s"), "t.audio_id = s.audio_id AND t.segment_id = s.segment_id")
        .whenMatchedUpdate(set={c: f"s.{c}" for c in seg_cols})
        .whenNotMatchedInsert(values={c: f"s.{c}" for c in seg_cols})
        # segments of batch rows that are gone (rejected now, or fewer segments than before)
        .whenNotMatchedBySourceDelete(condition=f"t.audio_id IN ({id_list})")
        .execute()
    )


def _merge_quarantine(spark, warehouse: Warehouse, judged, run_id: str) -> None:
    """Rejected rows (every URI of the audio) enter quarantine; passed rows leave it."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    uris = spark.read.format("delta").load(warehouse.path(BRONZE)).where("error_code IS NULL").select(
        "uri", "audio_id")
    rows = judged.select("audio_id", "failed_expectations", "rejected", "recipe_hash", "annotated_at").join(
        uris, "audio_id").select(
        "uri", "audio_id", F.lit("publish").alias("stage"),
        F.lit(str(ErrorCode.EXPECTATION_FAILED)).alias("error_code"),
        F.when(F.col("rejected") == 1, F.concat(F.lit("failed: "), F.array_join("failed_expectations", ", "))
               ).alias("reason"),
        "failed_expectations", "recipe_hash", "annotated_at", F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("first_seen"), F.current_timestamp().alias("last_seen"), "rejected",
    )
    cols = [f.name for f in QUARANTINE.schema.fields]
    (
        DeltaTable.forPath(spark, warehouse.path(QUARANTINE)).alias("t")
        .merge(rows.alias("s"), "t.uri = s.uri AND t.stage = s.stage")
        .whenMatchedDelete(condition="s.rejected = 0")
        .whenMatchedUpdate(condition="s.rejected = 1", set={
            c: f"s.{c}" for c in ("audio_id", "reason", "failed_expectations", "recipe_hash", "annotated_at",
                                  "run_id", "last_seen")})
        .whenNotMatchedInsert(condition="s.rejected = 1", values={c: f"s.{c}" for c in cols})
        .execute()
    )


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["publish", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
