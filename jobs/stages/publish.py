"""Publish: judge annotated audio with the quality gate; curated rows → gold, the rest → quarantine.

    voxlake publish --warehouse DIR [--config FILE]

Select: the live audio whose decision is not current for one of its URIs. A decision is current when it
was made under this recipe, for this silver row version, and for the audio's current URIs and manifest
fields (`decision_key`): new bytes at a URI, a new URI of known audio, a URI gone, an edited manifest
field, a recomputed annotator or another recipe all make it stale. Also: gold rows of audio that no
live file holds any more (its bytes were replaced or its files deleted).
Process: the row suite as Spark conditions (expectations/gate.py), then the critical table suite.
Commit: one MERGE into gold.utterances and one into gold.segments, then every URI's outcome (curated or
quarantined with the failed expectations). A failed critical check commits nothing and exits 1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from expectations.gate import SUITES_DIR, Gate, load_suite_spec, with_row_failures
from jobs.config import Config
from jobs.stages.stage import Inputs, Stage, StageContext, Work, chunk_count, run_stage
from jobs.warehouse import outcomes
from jobs.warehouse.catalog import BRONZE, FILE_STATE, LINKS, SEGMENTS, SILVER, UTTERANCES
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.live import audio_view, live_files
from jobs.warehouse.store import Warehouse
from schemas.errors import ErrorCode
from udfs.files import local_path
from udfs.storage import split_bucket

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    candidates: int = 0
    published: int = 0
    quarantined: int = 0
    removed: int = 0  # gold rows of audio no file holds any more
    blocked: bool = False
    failed_checks: list = field(default_factory=list)
    rejected_by: dict = field(default_factory=dict)  # expectation name -> rows
    docs_path: str | None = None


def recipe_hash(config: Config) -> str:
    """What a curation decision was made under: the recipe, the quality bands and the suites' text."""
    cfg = config.publish
    suites = "".join((SUITES_DIR / f).read_text() for f in ("rows.yaml", "table.yaml"))
    blob = json.dumps({"recipe": dataclasses.asdict(cfg.recipe), "bands": dataclasses.asdict(cfg.quality_bands),
                       "suites": suites}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flat_rows(spark, warehouse: Warehouse, config: Config, rhash: str):
    """The gold columns (and the gate's inputs) for every live audio that decoded, with `decision_key`."""
    from pyspark.sql import functions as F

    bands = config.publish.quality_bands
    audio = audio_view(spark, warehouse)
    s = spark.read.format("delta").load(warehouse.path(SILVER)).where("decode.status = 'ok'").drop(
        "uri", "duration_s")
    links = spark.read.format("delta").load(warehouse.path(LINKS)).drop("linked_at")
    # the links are part of the decision: a file that becomes (or stops being) a duplicate is judged again
    key = F.concat_ws("|", F.lit(rhash), F.col("updated_at").cast("string"), F.col("inputs_hash"),
                      F.coalesce("speaker_cluster_id", F.lit("")), F.coalesce("duplicate_group_id", F.lit("")),
                      F.coalesce("duplicate_of", F.lit("")))
    return audio.join(s, "audio_id").join(links, "audio_id", "left").select(
        "audio_id", "uri", "uris",
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
        F.when(F.col("quality.ovrl") >= bands.high, "high")
         .when(F.col("quality.ovrl") >= bands.medium, "medium")
         .when(F.col("quality.ovrl").isNotNull(), "low").alias("quality_band"),
        F.col("text.words_per_s").alias("words_per_s"), F.col("text.wer").alias("wer"),
        F.col("text.has_pii").alias("has_pii"), F.col("text.hallucination").alias("hallucination"),
        F.col("text.language_agrees").alias("language_agrees"),
        F.col("asr.model").alias("asr_model"), F.col("asr.model_sha256").alias("asr_model_sha256"),
        F.lit(rhash).alias("recipe_hash"),
        F.col("updated_at").alias("annotated_at"),
        F.col("speakers.n_speakers").alias("n_speakers"), "speaker_cluster_id",
        F.col("events.music_ratio").alias("music_ratio"), F.col("events.event_top").alias("event_top"),
        F.col("distillmos.mos").alias("distillmos"), F.col("quality.plcmos").alias("plcmos"),
        "duplicate_group_id", "duplicate_of",
        F.substring(F.sha2(key, 256), 1, 16).alias("decision_key"),
    )


def candidates(spark, warehouse: Warehouse, config: Config, rhash: str):
    """flat_rows of the audio with at least one live URI whose recorded decision is not current."""
    from pyspark.sql import functions as F

    flat = flat_rows(spark, warehouse, config, rhash)
    state = spark.read.format("delta").load(warehouse.path(FILE_STATE)).select(
        "uri", F.col("decision_key").alias("_recorded"))
    stale = (
        live_files(spark, warehouse).select("uri", "audio_id")
        .join(flat.select("audio_id", "decision_key"), "audio_id")
        .join(state, "uri", "left")
        .where(~F.col("_recorded").eqNullSafe(F.col("decision_key")))
        .select("audio_id").distinct()
    )
    return flat.join(stale, "audio_id", "left_semi")


def orphaned_gold(spark, warehouse: Warehouse):
    """audio_ids in gold that no live file holds any more."""
    gold = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select("audio_id")
    live = live_files(spark, warehouse).select("audio_id")
    return gold.join(live, "audio_id", "left_anti")


def quality_dir(config: Config, warehouse_root: str) -> str:
    """The local folder of the GX project and its Data Docs: `quality.docs_dir` when set; otherwise
    `<warehouse>/quality` for a local warehouse and `./voxlake-quality/<bucket>/<path>` for an
    object-store one (GX writes its sites to local files; publish Data Docs from there if wanted)."""
    chosen = config.quality.docs_dir
    if chosen:
        return str(Path(chosen).expanduser().resolve())
    local = local_path(warehouse_root)
    if local is not None:
        return str(Path(local) / "quality")
    bucket, key = split_bucket(warehouse_root)
    return str((Path("voxlake-quality") / bucket / key).resolve())


class PublishStage(Stage):
    """Select: the live audio whose decision is not current, through the row suite (staged), and the gold
    rows no live file holds any more. Process and commit, in chunks of about `publish.commit_every_s`
    audio seconds (hash buckets of the audio id): each chunk is gated (row and critical suites) and
    committed on its own, so a killed run keeps what it published. A chunk that fails a critical check
    commits nothing and stops the run. The inputs: bronze, silver, silver.links, file_state, gold and the
    recipe (a run that finds nothing to judge records them)."""

    name = "publish"

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = self.config.publish
        self.rhash = recipe_hash(self.config)
        values = {"recipe": dataclasses.asdict(cfg.recipe), "critical": dataclasses.asdict(cfg.critical)}
        self.rows_spec, self.table_spec = load_suite_spec("rows", values), load_suite_spec("table", values)
        self.staging = self.warehouse.staging("publish", self.record.run_id)
        self.result = PublishResult()
        self.gone = None
        self.gate = None

    def inputs(self) -> Inputs:
        return Inputs(tables=(BRONZE, SILVER, LINKS, FILE_STATE, UTTERANCES, SEGMENTS),
                      facts={"recipe_hash": self.rhash})

    def unchanged(self, recorded: dict) -> PublishResult:
        log.info("publish: nothing new to judge (no table changed since a run found nothing to judge)")
        return self.result

    def select(self) -> Work | None:
        from pyspark.sql import functions as F

        spark, warehouse = self.spark, self.warehouse
        # stage the judged batch and the orphans: everything below reads one fixed snapshot
        with_row_failures(candidates(spark, warehouse, self.config, self.rhash), self.rows_spec).write.format(
            "delta").mode("overwrite").save(self.staging)
        orphaned_gold(spark, warehouse).write.format("delta").mode("overwrite").save(self.staging + "_gone")
        judged = spark.read.format("delta").load(self.staging)
        self.gone = spark.read.format("delta").load(self.staging + "_gone")
        counts = judged.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).first()
        n, total_s = int(counts["n"]), float(counts["s"] or 0.0)
        n_gone = self.gone.count()
        self.result = PublishResult(candidates=n, removed=n_gone)
        if n == 0 and n_gone == 0:
            log.info("publish: nothing new to judge")
            self.settled = True
            return None
        if not n_gone:
            self.gone = None
        self.gate = Gate(quality_dir(self.config, warehouse.root)) if n else None
        return Work(judged, n, total_s)

    def chunks(self, work: Work) -> int:
        return chunk_count(work.files, work.seconds, self.config.publish.commit_every_s) if work.files else 1

    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        result = self.result
        part_n, part_rejected = _publish_chunk(self.spark, self.warehouse, self.gate, part,
                                               self.gone if index == 0 else None,
                                               self.rows_spec, self.table_spec, result, self.record)
        if result.blocked:
            return False
        result.published += part_n - part_rejected
        result.quarantined += part_rejected
        if count > 1:
            log.info("publish: chunk %d/%d committed: %d judged (%d curated so far)", index + 1, count,
                     part_n, result.published)
        return True

    def finish(self, work: Work | None) -> PublishResult:
        result, record = self.result, self.record
        if result.removed and not result.blocked:
            log.info("publish: removed %d gold rows whose audio no listed file holds any more", result.removed)
        record.rows_out += result.published
        record.rows_quarantined += result.quarantined
        for name, count in result.rejected_by.items():
            record.errors_by_code[f"{ErrorCode.EXPECTATION_FAILED}:{name}"] = count
        return result

    def close(self) -> None:
        self.warehouse.remove(self.staging)
        self.warehouse.remove(self.staging + "_gone")


def run_publish(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> PublishResult:
    """`voxlake publish`: the stage, run by the shared loop."""
    return run_stage(PublishStage(StageContext(spark, config, warehouse, record)))


def _publish_chunk(spark, warehouse: Warehouse, gate, part, gone, rows_spec: dict, table_spec: dict,
                   result: PublishResult, record: RunRecord) -> tuple[int, int]:
    """Gate one chunk and commit it (gold, segments, outcomes). Returns (judged, rejected)."""
    from pyspark.sql import functions as F

    counts = part.agg(F.count("*").alias("n"), F.sum("rejected").alias("r")).first()
    n, rejected = int(counts["n"]), int(counts["r"] or 0)
    if n:
        _check_row_gate(gate, part, rows_spec, result)
        table = gate.validate_table(part, table_spec)
        result.docs_path = table.docs_path
        record.validation_success = table.success if record.validation_success is not False else False
        if not table.success:
            result.blocked, result.failed_checks = True, table.failed
            record.message = "critical checks failed, nothing published: " + json.dumps(table.failed, default=str)
            log.error("publish blocked: %s", record.message)
            return n, rejected
    if n or gone is not None:
        _merge_gold(spark, warehouse, part, gone if gone is not None else part.limit(0).select("audio_id"),
                    record.run_id)
        _record_outcomes(spark, warehouse, part, record.run_id)
    return n, rejected


def _check_row_gate(gate, judged, rows_spec: dict, result: PublishResult) -> None:
    """Count rejections per expectation in Spark and check GX's counts agree (GX also writes Data Docs)."""
    from pyspark.sql import functions as F

    spark_counts = {r["name"]: int(r["n"]) for r in judged.select(F.explode("failed_expectations").alias("name"))
                    .groupBy("name").agg(F.count("*").alias("n")).collect()}
    gx = gate.validate_rows(judged.drop("failed_expectations", "rejected"), rows_spec)
    result.docs_path = gx.docs_path
    disagree = {k: (spark_counts.get(k, 0), v) for k, v in gx.unexpected.items() if spark_counts.get(k, 0) != v}
    if disagree:
        raise RuntimeError(f"row gate disagrees with Great Expectations (spark, gx): {disagree}")
    for k, v in spark_counts.items():
        result.rejected_by[k] = result.rejected_by.get(k, 0) + v


def _merge_gold(spark, warehouse: Warehouse, judged, gone, run_id: str) -> None:
    """One MERGE per gold table: passed rows upserted; rejected rows and orphaned audio deleted."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from schemas.gold import UTTERANCES_SCHEMA

    cols = [f.name for f in UTTERANCES_SCHEMA.fields]
    drop = gone.select("audio_id", F.lit(1).alias("rejected"))
    source = judged.withColumn("published_at", F.current_timestamp()).withColumn(
        "publish_run_id", F.lit(run_id)).select(*cols, "rejected").unionByName(drop, allowMissingColumns=True)
    (
        DeltaTable.forPath(spark, warehouse.path(UTTERANCES)).alias("t")
        .merge(source.alias("s"), "t.audio_id = s.audio_id")
        .whenMatchedDelete(condition="s.rejected = 1")
        .whenMatchedUpdate(condition="s.rejected = 0", set={c: f"s.{c}" for c in cols})
        .whenNotMatchedInsert(condition="s.rejected = 0", values={c: f"s.{c}" for c in cols})
        .execute()
    )
    # segments: those of passed rows replace what gold had for that audio; every other segment of a
    # judged or orphaned audio goes (rejected now, or fewer segments than before)
    silver = spark.read.format("delta").load(warehouse.path(SILVER)).select("audio_id", "asr")
    passed = judged.where("rejected = 0").select("audio_id", "language")
    fresh = passed.join(silver, "audio_id").select(
        "audio_id", "language", F.explode("asr.segments").alias("seg")
    ).select(
        "audio_id", F.col("seg.id").alias("segment_id"), "language", F.col("seg.start_s").alias("start_s"),
        F.col("seg.end_s").alias("end_s"), F.col("seg.text").alias("text"),
        F.col("seg.avg_logprob").alias("avg_logprob"), F.col("seg.no_speech_prob").alias("no_speech_prob"),
        F.col("seg.compression_ratio").alias("compression_ratio"),
        F.col("seg.temperature").alias("temperature"), F.col("seg.words").alias("words"),
    ).withColumn("_drop", F.lit(0))
    touched = judged.select("audio_id").unionByName(gone.select("audio_id"))
    existing = spark.read.format("delta").load(warehouse.path(SEGMENTS)).select("audio_id", "segment_id")
    stale = existing.join(touched, "audio_id", "left_semi").join(
        fresh.select("audio_id", "segment_id"), ["audio_id", "segment_id"], "left_anti").withColumn("_drop", F.lit(1))
    seg_cols = [f.name for f in SEGMENTS.schema.fields]
    (
        DeltaTable.forPath(spark, warehouse.path(SEGMENTS)).alias("t")
        .merge(fresh.unionByName(stale, allowMissingColumns=True).alias("s"),
               "t.audio_id = s.audio_id AND t.segment_id = s.segment_id")
        .whenMatchedDelete(condition="s._drop = 1")
        .whenMatchedUpdate(set={c: f"s.{c}" for c in seg_cols})
        .whenNotMatchedInsert(condition="s._drop = 0", values={c: f"s.{c}" for c in seg_cols})
        .execute()
    )


def _record_outcomes(spark, warehouse: Warehouse, judged, run_id: str) -> None:
    """Every live URI of a judged audio: curated, or quarantined with the expectations it broke."""
    from pyspark.sql import functions as F

    rows = live_files(spark, warehouse).select("uri", "audio_id").join(
        judged.select("audio_id", "failed_expectations", "rejected", "recipe_hash", "annotated_at",
                      "decision_key", "duplicate_of"), "audio_id")
    rows = rows.select(
        "uri", "audio_id", "failed_expectations", "recipe_hash", "annotated_at", "decision_key",
        F.when(F.col("rejected") == 1, outcomes.QUARANTINED).otherwise(outcomes.CURATED).alias("status"),
        F.when(F.col("rejected") == 1, F.lit(str(ErrorCode.EXPECTATION_FAILED))).alias("error_code"),
        F.when(F.col("rejected") == 1, F.concat(
            F.lit("failed: "), F.array_join("failed_expectations", ", "),
            # a quarantined copy names the file kept in its place
            F.when(F.array_contains("failed_expectations", "near_duplicate"),
                   F.concat(F.lit(" (kept: "), F.col("duplicate_of"), F.lit(")"))).otherwise(F.lit(""))))
        .alias("reason"),
    )
    outcomes.record(spark, warehouse, outcomes.outcome_rows(rows, run_id, stage="publish"),
                    warehouse.staging("publish_outcomes", run_id))
