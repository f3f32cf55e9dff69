"""Export: gold at a pinned Delta version → a training format, written in parallel by the executors.

The version is pinned first (`--version`, `--timestamp`, or the current one, which is then recorded),
so an export never mixes two publishes, and the same version with the same predicate writes the same
files. gold.segments and gold.clips are read at the versions that belong to that publish: publish merges
utterances, then segments, then clips, so each is the last version committed before the next utterances
commit.

The unit (`--unit`) is a clip (gold.clips, the default), a file (gold.utterances) or an ASR segment
(gold.segments; nemo and lhotse); `--where` filters the unit's table.

Rows are dealt to shards by a hash of the audio id; the number of shards comes from the rows' total
(audio bytes for formats that carry the audio, rows otherwise) divided by the shard target, so shards
are about that size without any global ordering. `export.json` next to the shards records what was
exported: format, gold version, recipe, predicate, rows, hours, when, and the code's version.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.config import Config, ConfigError
from jobs.io.storage import storage_settings
from jobs.spark.progress import StageProgress
from jobs.warehouse.catalog import BRONZE, CLIPS, SEGMENTS, UTTERANCES
from jobs.warehouse.ledger import code_version
from jobs.warehouse.store import Warehouse

log = logging.getLogger(__name__)


@dataclass
class ExportRequest:
    format: str
    out: str
    where: str | None = None
    version: int | None = None
    timestamp: str | None = None
    embed_audio: bool = False
    unit: str = "clips"  # clips | files | segments


def _history(spark, path: str) -> list[tuple[int, datetime]]:
    """(version, commit time) of a table, oldest first: one row per commit, never per file."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, path).history().select("version", "timestamp").collect()
    return sorted((int(r["version"]), r["timestamp"]) for r in rows)


def pin_versions(spark, warehouse: Warehouse, version: int | None, timestamp: str | None):
    """(utterances version, its commit time, the matching segments version or None, the matching clips
    version or None)."""
    utt = _history(spark, warehouse.path(UTTERANCES))
    if version is not None:
        match = [v for v in utt if v[0] == version]
        if not match:
            raise ConfigError(f"gold.utterances has no version {version} (it has {utt[0][0]}..{utt[-1][0]}, "
                              "minus any vacuumed)")
        chosen = match[0]
    elif timestamp is not None:
        when = datetime.fromisoformat(timestamp)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        before = [v for v in utt if v[1].replace(tzinfo=v[1].tzinfo or UTC) <= when]
        if not before:
            raise ConfigError(f"gold.utterances did not exist at {timestamp}")
        chosen = before[-1]
    else:
        chosen = utt[-1]
    later = [v for v in utt if v[0] > chosen[0]]
    limit = later[0][1] if later else None

    def matching(table) -> int | None:
        versions = [v for v in _history(spark, warehouse.path(table)) if limit is None or v[1] < limit]
        return versions[-1][0] if versions else None

    return chosen[0], chosen[1], matching(SEGMENTS), matching(CLIPS)


def run_export(spark, config: Config, warehouse: Warehouse, req: ExportRequest) -> dict:
    from pyspark.sql import functions as F

    from udfs.export import FORMATS, RESULT_SCHEMA, UNITS, ExportSpec, make_export_fn

    if req.format not in FORMATS:
        raise ConfigError(f"unknown export format {req.format!r}: choose one of {', '.join(FORMATS)}")
    if req.unit not in UNITS:
        raise ConfigError(f"unknown export unit {req.unit!r}: choose one of {', '.join(UNITS)}")
    if req.unit == "segments" and req.format not in ("nemo", "lhotse"):
        raise ConfigError(f"--unit segments: nemo and lhotse only (a {req.format} row carries whole audio); "
                          "use --unit clips for cut audio")
    version, committed_at, seg_version, clip_version = pin_versions(spark, warehouse, req.version, req.timestamp)
    gold = spark.read.format("delta").option("versionAsOf", version).load(warehouse.path(UTTERANCES))
    clips = req.unit == "clips"
    if clips:
        if clip_version is None:
            raise ConfigError("gold.clips has no version for this publish (published before clips existed): "
                              "run `voxlake publish`, or export --unit files")
        files = gold.select("audio_id", "sample_rate", "channels", "reference_text",
                            F.col("duration_s").alias("file_duration_s"))
        gold = spark.read.format("delta").option("versionAsOf", clip_version).load(warehouse.path(CLIPS))
    if req.where:
        try:
            gold = gold.where(req.where)
            gold.schema  # noqa: B018 (analysis: a bad predicate fails here, with Spark's message)
        except Exception as exc:
            raise ConfigError(f"--where {req.where!r}: {str(exc).splitlines()[0]}") from None
    if clips:
        gold = gold.join(files, "audio_id")
    stats = gold.agg(F.count("*").alias("n"), F.sum("duration_s").alias("s"),
                     F.first("recipe_hash", ignorenulls=True).alias("recipe")).first()
    rows, seconds = int(stats["n"]), float(stats["s"] or 0.0)
    carries_audio = req.format == "webdataset" or (req.format == "hf" and (req.embed_audio or clips))
    if carries_audio and clips:  # the cut audio: PCM-sized, an upper bound of its FLAC
        total = int(gold.agg(F.sum(F.col("duration_s") * F.col("sample_rate") * F.coalesce("channels", F.lit(1))
                                   * 2)).first()[0] or 0)
        n_shards = max(1, math.ceil(total / (config.export.shard_mb << 20)))
    elif carries_audio:
        sizes = spark.read.format("delta").load(warehouse.path(BRONZE)).where("audio_id IS NOT NULL") \
            .groupBy("audio_id").agg(F.max("size_bytes").alias("_bytes"))
        gold = gold.join(sizes, "audio_id", "left")
        total = int(gold.agg(F.sum("_bytes")).first()[0] or 0)
        n_shards = max(1, math.ceil(total / (config.export.shard_mb << 20)))
        gold = gold.drop("_bytes")
    else:
        n_shards = max(1, math.ceil(rows / config.export.shard_rows))
    needs_segments = not clips and (req.format == "lhotse" or req.unit == "segments")
    if needs_segments and seg_version is not None:
        segs = spark.read.format("delta").option("versionAsOf", seg_version).load(warehouse.path(SEGMENTS))
        per_audio = segs.groupBy("audio_id").agg(F.sort_array(F.collect_list(F.struct(
            "segment_id", "start_s", "end_s", "text", "words"))).alias("segments"))
        gold = gold.join(per_audio, "audio_id", "left")
    order = ("_shard", "audio_id", "start_s") if clips else ("_shard", "audio_id")
    work = (gold.withColumn("_shard", F.pmod(F.xxhash64("audio_id"), F.lit(n_shards)).cast("int"))
            .repartition(n_shards, "_shard").sortWithinPartitions(*order))
    spec = ExportSpec(format=req.format, out=req.out, embed_audio=req.embed_audio, unit=req.unit,
                      mtime=committed_at.timestamp(), storage=storage_settings(spark))
    log.info("export: %d %s (%.2f h) of gold@%d as %s into %d shard(s) at %s", rows, req.unit, seconds / 3600,
             version, req.format, n_shards, req.out)
    with StageProgress(spark, f"export {req.format}", config.run.progress_log_s):
        written = work.mapInPandas(make_export_fn(spec), RESULT_SCHEMA).collect() if rows else []
    summary = {
        "format": req.format, "unit": req.unit, "gold_version": version,
        "segments_version": seg_version if needs_segments else None,
        "clips_version": clip_version if clips else None,
        # the clip rules' hashes of the exported clips, and the rules of this config (they cut the clips when
        # the config's clips annotator has the same params hash)
        "clip_params_hashes": sorted(r[0] for r in gold.select("clip_params_hash").distinct().collect())
        if clips else None,
        "clip_rules": dataclasses.asdict(config.clips) if clips else None,
        "recipe_hash": stats["recipe"], "where": req.where, "rows": rows, "hours": round(seconds / 3600, 6),
        "files": sorted(r["file"][len(req.out.rstrip("/")) + 1:] for r in written),
        "embed_audio": req.embed_audio if req.format == "hf" else None,
        "created_at": datetime.now(UTC).isoformat(), "code_version": code_version(),
    }
    _write_summary(warehouse, req.out, json.dumps(summary, indent=2) + "\n")
    return summary


def _write_summary(warehouse: Warehouse, out: str, text: str) -> None:
    from udfs.files import local_path

    local = local_path(f"{out.rstrip('/')}/export.json")
    if local is not None:  # a plain file (Hadoop's local filesystem would add a .crc beside it)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        Path(local).write_text(text, encoding="utf-8")
    else:
        warehouse.write_text(f"{out.rstrip('/')}/export.json", text)
