"""Publish: judge annotated audio with the quality gate; curated rows → gold, the rest → quarantine.

    voxlake publish --warehouse DIR [--config FILE] [--accept RUN_ID]

Select: the live audio whose decision is not current for one of its URIs. A decision is current when it
was made under this recipe, for this silver row version, and for the audio's current URIs and manifest
fields (`decision_key`): new bytes at a URI, a new URI of known audio, a URI gone, an edited manifest
field, a recomputed annotator or another recipe all make it stale. (Gold rows of audio no live file
holds any more are removed by the run's reconcile step: jobs.warehouse.reconcile.)
Process: the file suite (expectations/files.yaml) on each file and the clip suite (clips.yaml) on each of
its candidate clips (annotators.clips cut them), as Spark conditions (expectations/gate.py); a clip passes
when it and its file pass, a file is curated when one of its clips passes (otherwise it fails
`no_clip_passed` and the clip failures most common among its clips). Then the critical table suite over
the whole batch of files (or, for a small batch, the archive).
Commit: one MERGE into gold.utterances, gold.segments and gold.clips each, then every URI's outcome
(curated or quarantined with the failed expectations) and every clip's (ops.clip_state). A failed critical check commits nothing to gold, leaves the
batch pending with the reason and exits 1; `--accept RUN_ID` publishes a reviewed blocked batch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from expectations.gate import GATED_BY, SUITES_DIR, Gate, load_suite_spec, with_row_failures
from jobs.config import Config, ConfigError
from jobs.stages.recipe import suite_values
from jobs.stages.stage import Inputs, Stage, StageContext, Work, chunk_count, run_stage
from jobs.warehouse import outcomes
from jobs.warehouse.catalog import BRONZE, CLIP_STATE, CLIPS, FILE_STATE, LINKS, SEGMENTS, SILVER, UTTERANCES
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
    blocked: bool = False
    failed_checks: list = field(default_factory=list)
    rejected_by: dict = field(default_factory=dict)  # expectation name -> rows
    docs_path: str | None = None


SUITES = ("files.yaml", "clips.yaml", "table.yaml")
NO_CLIP_PASSED = "no_clip_passed"


def recipe_hash(config: Config) -> str:
    """What a curation decision was made under: the recipe, the clip rules, the quality bands and the
    suites' text."""
    cfg = config.publish
    suites = "".join((SUITES_DIR / f).read_text() for f in SUITES)
    blob = json.dumps({"recipe": dataclasses.asdict(cfg.recipe), "bands": dataclasses.asdict(cfg.quality_bands),
                       "clips": dataclasses.asdict(config.clips), "suites": suites}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flat_rows(spark, warehouse: Warehouse, config: Config, rhash: str):
    """The gold columns (and the gate's inputs) for every live audio that decoded, with `decision_key`."""
    from pyspark.sql import functions as F

    bands = config.publish.quality_bands
    audio = audio_view(spark, warehouse)
    s = spark.read.format("delta").load(warehouse.path(SILVER)).where("decode.status = 'ok'").drop(
        "uri", "duration_s")
    links = spark.read.format("delta").load(warehouse.path(LINKS)).drop("linked_at")
    # the check the cascade gated the file's expensive annotators with (the name before the ':' of a GATED
    # result's message, annotators.cascade.gated_check); the gate does not ask for what was not needed
    gated = [F.when(F.col(f"{n}.error_code") == F.lit(str(ErrorCode.GATED)),
                    F.substring_index(F.col(f"{n}.error_message"), ":", 1))
             for n in config.annotate.annotators if n in s.columns]
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
        F.col("clips.n_clips").alias("n_clips"),
        (F.coalesce(*gated) if gated else F.lit(None).cast("string")).alias(GATED_BY),
        F.substring(F.sha2(key, 256), 1, 16).alias("decision_key"),
    )


def clip_rows(spark, warehouse: Warehouse, files):
    """One row per candidate clip of `files` (flat_rows), with the clip suite's inputs and gold.clips'
    columns. The clip's speaker cluster is its file's when the file has one speaker (`link` clusters
    files by their mean voice)."""
    from pyspark.sql import functions as F

    s = spark.read.format("delta").load(warehouse.path(SILVER)).where("clips.status = 'ok'").select(
        "audio_id", F.col("clips.params_hash").alias("clip_params_hash"), F.explode("clips.clips").alias("c"))
    ms = lambda c: F.round(F.col(c) * 1000).cast("long")  # noqa: E731
    return files.select("audio_id", "uri", "speaker", "speaker_cluster_id", F.col("n_speakers").alias("_file_spk"),
                        "recipe_hash", "gated_by").join(s, "audio_id").select(
        "audio_id", "uri", "speaker", "recipe_hash", "clip_params_hash", "gated_by",
        "c.clip_index", "c.start_s", "c.end_s", "c.duration_s", "c.language", "c.language_prob",
        "c.language_agrees", "c.text", "c.words", "c.mean_word_prob", "c.avg_logprob", "c.speech_ratio",
        "c.snr_db", "c.dnsmos_ovrl", "c.distillmos", "c.music_ratio", "c.clipping_ratio", "c.speaker_label",
        "c.speaker_purity", "c.n_speakers", "c.words_per_s", "c.has_pii", "c.hallucination", "c.whole_file",
        F.when(F.col("_file_spk") == 1, F.col("speaker_cluster_id")).alias("speaker_cluster_id"),
    ).withColumn("clip_id", F.format_string("%s-%d-%d", F.col("audio_id"), ms("start_s"), ms("end_s")))


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
    """Select: the live audio whose decision is not current, through the row suite (staged; Great
    Expectations checks the same counts once over the batch). Judge the whole batch with the critical
    suite before anything is committed: a batch of at least
    `publish.critical.min_batch_files` files on its own, a smaller one together with the archive's earlier
    decisions (a quiet night's few files say nothing about the pipeline on their own). A failed check
    commits nothing to gold: the batch's files stay pending with the reason (PUBLISH_BLOCKED) until the
    cause is fixed or an operator accepts the batch (`voxlake publish --accept RUN_ID`). Otherwise commit,
    in chunks of about `publish.commit_every_s` audio seconds (hash buckets of the audio id): gold,
    segments, then the files' decisions, so a killed run keeps what it published. The inputs: bronze,
    silver, silver.links, file_state, gold and the recipe (a run that finds nothing to judge records them)."""

    name = "publish"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.rhash = recipe_hash(self.config)
        values = suite_values(self.config)
        self.files_spec, self.clips_spec = load_suite_spec("files", values), load_suite_spec("clips", values)
        self.table_spec = load_suite_spec("table", values)
        self.staging = self.warehouse.staging("publish", self.record.run_id)
        self.result = PublishResult()
        self.gate = None

    def inputs(self) -> Inputs | None:
        if self.config.publish.accept_run:
            return None  # an acceptance always selects
        return Inputs(tables=(BRONZE, SILVER, LINKS, FILE_STATE, UTTERANCES, SEGMENTS, CLIPS, CLIP_STATE),
                      facts={"recipe_hash": self.rhash})

    def unchanged(self, recorded: dict) -> PublishResult:
        log.info("publish: nothing new to judge (no table changed since a run found nothing to judge)")
        return self.result

    def select(self) -> Work | None:
        from pyspark.sql import functions as F

        spark, warehouse = self.spark, self.warehouse
        accepted = self._accepted() if self.config.publish.accept_run else None
        # stage the judged batch: everything below reads one fixed snapshot
        judged = self._judge()
        counts = judged.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s")).first()
        n, total_s = int(counts["n"]), float(counts["s"] or 0.0)
        self.result = PublishResult(candidates=n)
        if n == 0:
            log.info("publish: nothing new to judge")
            self.settled = True
            return None
        self.gate = Gate(quality_dir(self.config, warehouse.root))
        # GX checks each suite once, over the whole batch
        _check_row_gate(self.gate, spark.read.format("delta").load(self.staging + "_files"), self.files_spec,
                        "file_failed", self.result)
        _check_row_gate(self.gate, spark.read.format("delta").load(self.staging + "_clips"), self.clips_spec,
                        "clip_failed", self.result)
        no_clip = judged.where(F.array_contains("failed_expectations", NO_CLIP_PASSED)).count()
        if no_clip:
            self.result.rejected_by[NO_CLIP_PASSED] = no_clip
        to_check = judged if accepted is None else judged.join(accepted, "audio_id", "left_anti")
        if self._blocked(to_check):
            return None
        return Work(judged, n, total_s)

    def _judge(self):
        """Judge the candidates and stage them (files, then their clips, then the files' verdicts), so that
        everything after reads one fixed snapshot: `<staging>_files` (file suite), `<staging>_clips` (every
        candidate clip, `rejected` and the failures of the clip and its file) and `<staging>` (the files,
        `rejected` and failed_expectations, clips_curated, curated_s). Returns the staged files."""
        from pyspark.sql import functions as F

        spark, warehouse = self.spark, self.warehouse
        none = F.array().cast("array<string>")
        files = with_row_failures(candidates(spark, warehouse, self.config, self.rhash), self.files_spec)
        files.withColumnRenamed("failed_expectations", "file_failed").drop("rejected").write.format(
            "delta").mode("overwrite").save(self.staging + "_files")
        files = spark.read.format("delta").load(self.staging + "_files")
        if files.isEmpty():
            return files  # nothing to judge (select stops here): no clips or verdicts to stage
        clips = with_row_failures(clip_rows(spark, warehouse, files), self.clips_spec).withColumnRenamed(
            "failed_expectations", "clip_failed").drop("rejected")
        both = F.array_sort(F.array_distinct(F.concat(F.coalesce("clip_failed", none), F.coalesce("file_failed", none))))
        clips = (clips.join(files.select("audio_id", "file_failed"), "audio_id")
                 .withColumn("failed_expectations", F.when(F.size(both) > 0, both))
                 .withColumn("rejected", F.when(F.size(both) > 0, 1).otherwise(0)).drop("file_failed"))
        clips.write.format("delta").mode("overwrite").save(self.staging + "_clips")
        clips = spark.read.format("delta").load(self.staging + "_clips")
        # per file: its passing clips, and the clip failures most common among its clips
        passed = clips.groupBy("audio_id").agg(
            F.count(F.when(F.col("clip_failed").isNull(), 1)).alias("_clip_passes"),
            F.count(F.when(F.col("rejected") == 0, 1)).cast("int").alias("clips_curated"),
            F.sum(F.when(F.col("rejected") == 0, F.col("duration_s")).otherwise(0.0)).alias("curated_s"))
        counted = clips.select("audio_id", F.explode("clip_failed").alias("name")).groupBy("audio_id", "name").count()
        top = counted.groupBy("audio_id").agg(F.max("count").alias("_max")).join(counted, "audio_id").where(
            "count = _max").groupBy("audio_id").agg(F.collect_set("name").alias("_top"))
        no_clip = F.coalesce(F.col("_clip_passes"), F.lit(0)) == 0
        failed = F.array_sort(F.array_distinct(F.concat(
            F.coalesce("file_failed", none),
            F.when(no_clip, F.concat(F.array(F.lit(NO_CLIP_PASSED)), F.coalesce("_top", none))).otherwise(none))))
        judged = (files.join(passed, "audio_id", "left").join(top, "audio_id", "left")
                  .withColumn("failed_expectations", F.when(F.size(failed) > 0, failed))
                  .withColumn("rejected", F.when(F.size(failed) > 0, 1).otherwise(0))
                  .withColumn("clips_curated", F.when(F.col("rejected") == 0, F.col("clips_curated")).otherwise(0))
                  .withColumn("curated_s", F.when(F.col("rejected") == 0, F.col("curated_s")).otherwise(0.0))
                  .drop("file_failed", "_clip_passes", "_top"))
        judged.write.format("delta").mode("overwrite").save(self.staging)
        return spark.read.format("delta").load(self.staging)

    def _accepted(self):
        """The audio of the batch `publish.accept_run` blocked (recorded by that run, see _blocked): the
        critical suite does not judge it again. Only the latest blocked batch can be accepted."""
        run_id = self.config.publish.accept_run
        kept = f"{blocked_batches(self.warehouse)}/{run_id}"
        if not self.warehouse.exists(kept):
            raise ConfigError(f"--accept {run_id}: not the latest blocked publish (see SELECT run_id, message FROM "
                              "ops.runs WHERE status = 'blocked' ORDER BY started_at DESC), or already accepted")
        ids = self.spark.read.format("delta").load(kept)
        self.record.message = f"accepted the batch run {run_id} blocked ({ids.count()} audio)"
        log.info("publish: %s: the critical suite does not judge it again", self.record.message)
        return ids

    def _blocked(self, batch) -> bool:
        """Run the critical suite on `batch` (on the archive when the batch is small); on a failure, mark
        the batch's files pending with the reason and return True. Nothing is committed to gold then."""
        cfg = self.config.publish.critical
        n = batch.count()
        if n == 0:
            return False
        scope = batch
        if n < cfg.min_batch_files:  # staged: the suite's metrics would each recompute the archive's joins
            archive_for(self.spark, self.warehouse, self.config, self.rhash, batch, self.table_spec).write.format(
                "delta").mode("overwrite").save(self.staging + "_archive")
            scope = self.spark.read.format("delta").load(self.staging + "_archive")
        table = self.gate.validate_table(scope, self.table_spec)
        self.result.docs_path = table.docs_path
        self.record.validation_success = table.success
        if table.success:
            return False
        result, record = self.result, self.record
        result.blocked, result.failed_checks = True, table.failed
        what = "batch" if scope is batch else f"archive (a batch of {n} < min_batch_files {cfg.min_batch_files})"
        checks = ", ".join(f"{c['name']} (observed {c['observed']})" for c in table.failed)
        record.message = f"critical checks failed on the {what}, nothing published: {checks}"
        log.error("publish blocked: %s", record.message)
        reason = (f"publish run {record.run_id} blocked: {checks}; fix the cause, or review and "
                  f"`voxlake publish --accept {record.run_id}`")
        judged = self.spark.read.format("delta").load(self.staging)
        # the batch, kept for `--accept` (only the latest: an earlier blocked batch is in this one too)
        folder = blocked_batches(self.warehouse)
        self.warehouse.remove(folder)
        judged.select("audio_id").write.format("delta").save(f"{folder}/{record.run_id}")
        _record_blocked(self.spark, self.warehouse, judged, reason, record.run_id)
        return True

    def chunks(self, work: Work) -> int:
        return chunk_count(work.files, work.seconds, self.config.publish.commit_every_s)

    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        result = self.result
        clips = self.spark.read.format("delta").load(self.staging + "_clips").join(
            part.select("audio_id"), "audio_id", "left_semi")
        part_n, part_rejected = _publish_chunk(self.spark, self.warehouse, part, clips, self.record)
        result.published += part_n - part_rejected
        result.quarantined += part_rejected
        if count > 1:
            log.info("publish: chunk %d/%d committed: %d judged (%d curated so far)", index + 1, count,
                     part_n, result.published)
        return True

    def finish(self, work: Work | None) -> PublishResult:
        result, record = self.result, self.record
        if work is not None:  # judged and published: no earlier blocked batch is waiting any more
            self.warehouse.remove(blocked_batches(self.warehouse))
        record.rows_out += result.published
        record.rows_quarantined += result.quarantined
        for name, count in result.rejected_by.items():
            record.errors_by_code[f"{ErrorCode.EXPECTATION_FAILED}:{name}"] = count
        return result

    def close(self) -> None:
        for suffix in ("", "_archive", "_files", "_clips"):
            self.warehouse.remove(self.staging + suffix)


def run_publish(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> PublishResult:
    """`voxlake publish`: the stage, run by the shared loop."""
    return run_stage(PublishStage(StageContext(spark, config, warehouse, record)))


def blocked_batches(warehouse: Warehouse) -> str:
    """Where a blocked publish keeps its batch's audio ids for `--accept` (one folder, the latest run)."""
    return f"{warehouse.root}/_state/publish_blocked"


def archive_for(spark, warehouse: Warehouse, config: Config, rhash: str, batch, table_spec: dict):
    """The batch together with every earlier decision (the audio publish curated or quarantined, as the
    gate saw it: `rejected` 1 for quarantined), one row per audio, in the columns the critical suite reads."""
    from pyspark.sql import functions as F

    columns = sorted({e["column"] for e in table_spec["expectations"] if "column" in e} | {"audio_id", "rejected"})
    decided = (spark.read.format("delta").load(warehouse.path(FILE_STATE))
               .where((F.col("stage") == "publish") & F.col("status").isin(outcomes.CURATED, outcomes.QUARANTINED))
               .groupBy("audio_id")
               .agg(F.max(F.when(F.col("status") == outcomes.QUARANTINED, 1).otherwise(0)).alias("rejected")))
    earlier = (flat_rows(spark, warehouse, config, rhash).drop("rejected").join(decided, "audio_id")
               .join(batch.select("audio_id"), "audio_id", "left_anti"))
    return batch.select(*columns).unionByName(earlier.select(*columns))


def _publish_chunk(spark, warehouse: Warehouse, part, clips, record: RunRecord) -> tuple[int, int]:
    """Commit one judged chunk (gold, segments, clips, the clips' outcomes, the files' outcomes). Returns
    (judged, rejected)."""
    from pyspark.sql import functions as F

    counts = part.agg(F.count("*").alias("n"), F.sum("rejected").alias("r")).first()
    n, rejected = int(counts["n"]), int(counts["r"] or 0)
    if n:
        _merge_gold(spark, warehouse, part, record.run_id)
        _merge_clips(spark, warehouse, part, clips, record.run_id)
        _record_clip_outcomes(spark, warehouse, part, clips, record.run_id)
        # last: a file's decision marks it done, so a crash before this commit has the chunk judged again
        _record_outcomes(spark, warehouse, part, record.run_id)
    return n, rejected


def _check_row_gate(gate, judged, spec: dict, failed_column: str, result: PublishResult) -> None:
    """Count rejections per expectation of `spec` in Spark (`failed_column`) and check GX's counts agree
    (GX also writes Data Docs)."""
    from pyspark.sql import functions as F

    spark_counts = {r["name"]: int(r["n"]) for r in judged.select(F.explode(failed_column).alias("name"))
                    .groupBy("name").agg(F.count("*").alias("n")).collect()}
    inputs = {e["column"] for e in spec["expectations"]} | {GATED_BY for e in spec["expectations"]
                                                           if e.get("unless_gated")}
    gx = gate.validate_rows(judged.select(*sorted(inputs)), spec)
    result.docs_path = gx.docs_path
    disagree = {k: (spark_counts.get(k, 0), v) for k, v in gx.unexpected.items() if spark_counts.get(k, 0) != v}
    if disagree:
        raise RuntimeError(f"row gate disagrees with Great Expectations (spark, gx): {disagree}")
    for k, v in spark_counts.items():
        result.rejected_by[k] = result.rejected_by.get(k, 0) + v


def _merge_gold(spark, warehouse: Warehouse, judged, run_id: str) -> None:
    """One MERGE per gold table: passed rows upserted, rejected rows deleted."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from schemas.gold import UTTERANCES_SCHEMA

    cols = [f.name for f in UTTERANCES_SCHEMA.fields]
    source = judged.withColumn("published_at", F.current_timestamp()).withColumn(
        "publish_run_id", F.lit(run_id)).select(*cols, "rejected")
    with warehouse.committing("publish.gold"):
        (
            DeltaTable.forPath(spark, warehouse.path(UTTERANCES)).alias("t")
            .merge(source.alias("s"), "t.audio_id = s.audio_id")
            .whenMatchedDelete(condition="s.rejected = 1")
            .whenMatchedUpdate(condition="s.rejected = 0", set={c: f"s.{c}" for c in cols})
            .whenNotMatchedInsert(condition="s.rejected = 0", values={c: f"s.{c}" for c in cols})
            .execute()
        )
    # segments: those of passed rows replace what gold had for that audio; every other segment of a
    # judged audio goes (rejected now, or fewer segments than before)
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
    touched = judged.select("audio_id")
    existing = spark.read.format("delta").load(warehouse.path(SEGMENTS)).select("audio_id", "segment_id")
    stale = existing.join(touched, "audio_id", "left_semi").join(
        fresh.select("audio_id", "segment_id"), ["audio_id", "segment_id"], "left_anti").withColumn("_drop", F.lit(1))
    seg_cols = [f.name for f in SEGMENTS.schema.fields]
    with warehouse.committing("publish.segments"):
        (
            DeltaTable.forPath(spark, warehouse.path(SEGMENTS)).alias("t")
            .merge(fresh.unionByName(stale, allowMissingColumns=True).alias("s"),
                   "t.audio_id = s.audio_id AND t.segment_id = s.segment_id")
            .whenMatchedDelete(condition="s._drop = 1")
            .whenMatchedUpdate(set={c: f"s.{c}" for c in seg_cols})
            .whenNotMatchedInsert(condition="s._drop = 0", values={c: f"s.{c}" for c in seg_cols})
            .execute()
        )


def _merge_clips(spark, warehouse: Warehouse, judged, clips, run_id: str) -> None:
    """gold.clips of the judged files: their passing clips upserted, every other clip of theirs deleted."""
    from pyspark.sql import functions as F

    from schemas.gold import CLIPS_SCHEMA

    fresh = (clips.where("rejected = 0").withColumn("published_at", F.current_timestamp())
             .withColumn("publish_run_id", F.lit(run_id)).select(*[f.name for f in CLIPS_SCHEMA.fields]))
    _replace_clips_of(spark, warehouse, CLIPS, judged, fresh, "publish.clips")


def _record_clip_outcomes(spark, warehouse: Warehouse, judged, clips, run_id: str) -> None:
    """ops.clip_state of the judged files: each candidate clip curated or quarantined (with what it failed);
    clips of theirs no longer cut are deleted."""
    from pyspark.sql import functions as F

    fresh = clips.select(
        "clip_id", "audio_id", "uri", "start_s", "end_s", "duration_s",
        F.when(F.col("rejected") == 1, outcomes.QUARANTINED).otherwise(outcomes.CURATED).alias("status"),
        "failed_expectations", "recipe_hash", "clip_params_hash", F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("decided_at"))
    _replace_clips_of(spark, warehouse, CLIP_STATE, judged, fresh, "publish.clip_state")


def _replace_clips_of(spark, warehouse: Warehouse, table, judged, fresh, point: str) -> None:
    """One MERGE that makes `table` hold exactly `fresh`'s rows (by clip_id) for the judged files' audio:
    fresh rows upserted, that audio's other rows deleted."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    cols = fresh.columns
    existing = spark.read.format("delta").load(warehouse.path(table)).select("clip_id", "audio_id")
    stale = (existing.join(judged.select("audio_id"), "audio_id", "left_semi")
             .join(fresh.select("clip_id"), "clip_id", "left_anti").withColumn("_drop", F.lit(1)))
    source = fresh.withColumn("_drop", F.lit(0)).unionByName(stale, allowMissingColumns=True)
    with warehouse.committing(point):
        (
            DeltaTable.forPath(spark, warehouse.path(table)).alias("t")
            .merge(source.alias("s"), "t.clip_id = s.clip_id")
            .whenMatchedDelete(condition="s._drop = 1")
            .whenMatchedUpdate(set={c: f"s.{c}" for c in cols})
            .whenNotMatchedInsert(condition="s._drop = 0", values={c: f"s.{c}" for c in cols})
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
    with warehouse.committing("publish.file_state"):
        outcomes.record(spark, warehouse, outcomes.outcome_rows(rows, run_id, stage="publish"),
                        warehouse.staging("publish_outcomes", run_id))


def _record_blocked(spark, warehouse: Warehouse, judged, reason: str, run_id: str) -> None:
    """The live URIs of a blocked batch's audio that gold does not hold: pending, with the reason (gold
    keeps what it had: an audio curated before stays curated under its earlier decision)."""
    from pyspark.sql import functions as F

    gold = spark.read.format("delta").load(warehouse.path(UTTERANCES)).select("audio_id")
    rows = (live_files(spark, warehouse).select("uri", "audio_id")
            .join(judged.select("audio_id"), "audio_id", "left_semi")
            .join(gold, "audio_id", "left_anti")
            .select("uri", "audio_id", F.lit(outcomes.PENDING).alias("status"),
                    F.lit(str(ErrorCode.PUBLISH_BLOCKED)).alias("error_code"), F.lit(reason).alias("reason")))
    with warehouse.committing("publish.blocked"):
        outcomes.record(spark, warehouse, outcomes.outcome_rows(rows, run_id, stage="publish"),
                        warehouse.staging("publish_blocked", run_id))
