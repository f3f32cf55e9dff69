"""`voxlake report`: the dataset card's numbers, aggregated by Spark.

Every figure is a grouped aggregate (by language, band, histogram bin, run, annotator), so what reaches
the driver grows with the number of groups, never with the number of files. jobs/report_html.py turns
them into one self-contained HTML page.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from jobs.config import Config
from jobs.warehouse.catalog import CLIP_STATE, CLIPS, FILE_STATE, RUNS, SILVER, UTTERANCES
from jobs.warehouse.store import Warehouse

HISTOGRAMS = {  # gold column -> (bin width, label)
    "duration_s": (1.0, "duration (s)"),
    "snr_db": (2.5, "SNR (dB)"),
    "dnsmos_ovrl": (0.1, "DNSMOS overall (MOS)"),
    "words_per_s": (0.25, "speaking rate (words/s)"),
}
BANDWIDTH_CLASSES = [(0, 3400, "narrowband (<3.4 kHz)"), (3400, 7000, "wideband (3.4-7 kHz)"),
                     (7000, 14000, "super-wideband (7-14 kHz)"), (14000, 10**9, "fullband (>14 kHz)")]


@dataclass
class ReportData:
    warehouse: str
    gold_version: int | None
    created_at: str
    totals: dict
    by_language_band: pd.DataFrame
    histograms: dict[str, pd.DataFrame]  # column -> (language, bin, files)
    bandwidth: pd.DataFrame
    quarantine: pd.DataFrame
    quarantine_trend: pd.DataFrame
    annotator_failures: pd.DataFrame
    throughput: pd.DataFrame
    recipe: dict
    recipe_hash: str | None
    examples: list[dict] = field(default_factory=list)  # per language: the best and worst file, to listen to
    blocked: dict | None = None  # the latest publishing run, when the critical suite blocked it: run_id, message
    clip_sources: pd.DataFrame | None = None  # curated clips and hours from long and from short files
    clip_lengths: pd.DataFrame | None = None  # (bin, clips): curated clip durations, 1 s bins
    clip_rejections: pd.DataFrame | None = None  # (expectation, clips): why candidate clips were quarantined



def _pdf(df) -> pd.DataFrame:
    return pd.DataFrame([r.asDict() for r in df.collect()], columns=df.columns)


def gather(spark, config: Config, warehouse: Warehouse) -> ReportData:
    from pyspark.sql import functions as F

    gold = spark.read.format("delta").load(warehouse.path(UTTERANCES))
    totals_row = gold.agg(F.count("*").alias("files"), F.sum("duration_s").alias("seconds"),
                          F.countDistinct("language").alias("languages"),
                          F.first("recipe_hash", ignorenulls=True).alias("recipe_hash")).first()
    state = spark.read.format("delta").load(warehouse.path(FILE_STATE))
    status = {r["status"]: r["n"] for r in state.groupBy("status").agg(F.count("*").alias("n")).collect()}
    by_lang_band = _pdf(gold.groupBy("language", F.coalesce("quality_band", F.lit("unrated")).alias("band"))
                        .agg(F.count("*").alias("files"), (F.sum("duration_s") / 3600).alias("hours"))
                        .orderBy("language", "band"))
    histograms = {}
    for column, (width, _) in HISTOGRAMS.items():
        histograms[column] = _pdf(
            gold.where(F.col(column).isNotNull())
            .groupBy("language", (F.floor(F.col(column) / width) * width).alias("bin"))
            .agg(F.count("*").alias("files")).orderBy("language", "bin"))
    bw = F.col("effective_hz")
    bw_class = F.lit("unknown")
    for low, high, label in reversed(BANDWIDTH_CLASSES):
        bw_class = F.when((bw >= low) & (bw < high), F.lit(label)).otherwise(bw_class)
    bandwidth = _pdf(gold.groupBy(bw_class.alias("class")).agg(F.count("*").alias("files")).orderBy("class"))
    quarantined = state.where("status = 'quarantined'")
    first_failed = F.when(F.size("failed_expectations") > 0, F.element_at("failed_expectations", 1))
    reason = F.coalesce(first_failed, F.col("error_code"), F.lit("unknown"))
    quarantine = _pdf(quarantined.groupBy(reason.alias("reason")).agg(F.count("*").alias("files"))
                      .orderBy(F.desc("files")))
    runs = spark.read.format("delta").load(warehouse.path(RUNS))
    trend = _pdf(runs.select("run_id", "started_at", F.explode("errors_by_code").alias("code", "files"))
                 .orderBy("started_at"))
    wall = F.col("finished_at").cast("double") - F.col("started_at").cast("double")
    throughput = _pdf(runs.where("audio_seconds > 0 AND finished_at IS NOT NULL")
                      .select("run_id", "job", "started_at", (F.col("audio_seconds") / 3600).alias("audio_hours"),
                              (wall / 3600).alias("wall_hours"))
                      .withColumn("x_realtime", F.col("audio_hours") / F.col("wall_hours"))
                      .orderBy("started_at"))
    silver = spark.read.format("delta").load(warehouse.path(SILVER))
    names = [f.name for f in silver.schema.fields
             if hasattr(f.dataType, "fieldNames") and "status" in f.dataType.fieldNames()]
    failures = silver.select(*[F.col(f"{n}.status").alias(n) for n in names])
    agg = failures.agg(*[F.sum(F.when(F.col(n) == "failed", 1).otherwise(0)).alias(f"{n}__failed") for n in names],
                       *[F.count(F.col(n)).alias(f"{n}__ran") for n in names]).first() if names else None
    annotator_failures = pd.DataFrame(
        [{"annotator": n, "ran": int(agg[f"{n}__ran"] or 0), "failed": int(agg[f"{n}__failed"] or 0)}
         for n in names] if agg else [], columns=["annotator", "ran", "failed"])
    if len(annotator_failures):
        annotator_failures["failure_rate"] = annotator_failures["failed"] / annotator_failures["ran"].clip(lower=1)
    examples = _examples(spark, gold)
    clips = spark.read.format("delta").load(warehouse.path(CLIPS))
    clip_sources = _pdf(clips.groupBy(F.when(F.col("whole_file"), "short files (one clip each)")
                                      .otherwise("long files (cut into clips)").alias("source"))
                        .agg(F.count("*").alias("clips"), (F.sum("duration_s") / 3600).alias("hours"))
                        .orderBy("source"))
    clip_lengths = _pdf(clips.groupBy(F.floor("duration_s").alias("bin")).agg(F.count("*").alias("clips"))
                        .orderBy("bin"))
    clip_rejections = _pdf(spark.read.format("delta").load(warehouse.path(CLIP_STATE))
                           .where("status = 'quarantined'")
                           .select(F.explode("failed_expectations").alias("expectation"))
                           .groupBy("expectation").agg(F.count("*").alias("clips")).orderBy(F.desc("clips")))
    latest = (runs.where(F.col("job").isin("run", "publish")).orderBy(F.desc("started_at"))
              .select("run_id", "status", "message").first())
    blocked = {"run_id": latest["run_id"], "message": latest["message"]} \
        if latest is not None and latest["status"] == "blocked" else None
    return ReportData(
        warehouse=warehouse.root, gold_version=warehouse.table_version(UTTERANCES),
        created_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        totals={"files": int(totals_row["files"]), "hours": float(totals_row["seconds"] or 0) / 3600,
                "languages": int(totals_row["languages"]), "curated": int(status.get("curated", 0)),
                "quarantined": int(status.get("quarantined", 0)), "pending": int(status.get("pending", 0))},
        by_language_band=by_lang_band, histograms=histograms, bandwidth=bandwidth, quarantine=quarantine,
        quarantine_trend=trend, annotator_failures=annotator_failures, throughput=throughput,
        recipe=dataclasses.asdict(config.publish.recipe), recipe_hash=totals_row["recipe_hash"],
        examples=examples, blocked=blocked, clip_sources=clip_sources, clip_lengths=clip_lengths,
        clip_rejections=clip_rejections)


MIME = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "oga": "audio/ogg",
        "opus": "audio/ogg", "m4a": "audio/mp4", "webm": "audio/webm"}
EMBED_MAX_BYTES = 2 << 20  # clips larger than this are named, not embedded (the page stays one light file)
EXAMPLE_LANGUAGES = 12  # the languages with the most hours


def _examples(spark, gold) -> list[dict]:
    """The highest- and lowest-DNSMOS file of each of the top languages, with their bytes when small
    (one grouped aggregate: two files per language reach the driver)."""
    from pyspark.sql import functions as F

    from jobs.io.storage import storage_settings
    from udfs.files import open_stream

    clip = F.struct("uri", "transcript", "duration_s", "dnsmos_ovrl")
    rated = gold.where(F.col("dnsmos_ovrl").isNotNull())
    rows = (rated.groupBy("language")
            .agg(F.sum("duration_s").alias("s"), F.max_by(clip, "dnsmos_ovrl").alias("best"),
                 F.min_by(clip, "dnsmos_ovrl").alias("worst"))
            .orderBy(F.desc("s")).limit(EXAMPLE_LANGUAGES).collect())
    storage = storage_settings(spark)
    out = []
    for row in rows:
        entry = {"language": row["language"]}
        for which in ("best", "worst"):
            c = row[which].asDict()
            ext = c["uri"].rsplit(".", 1)[-1].lower() if "." in c["uri"] else ""
            c["mime"] = MIME.get(ext)
            c["data"] = None
            if c["mime"]:
                try:
                    with open_stream(c["uri"], storage) as f:
                        data = f.read(EMBED_MAX_BYTES + 1)
                    c["data"] = data if len(data) <= EMBED_MAX_BYTES else None
                except OSError:
                    pass
            entry[which] = c
        out.append(entry)
    return out
