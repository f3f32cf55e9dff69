"""What the warehouse says exists now: the live files (listed, readable, not deleted) and, per distinct
audio, the URIs holding it and the manifest fields that apply to it. Annotate and publish both read
these, so "current bytes and current manifest" means the same thing in every stage."""
from __future__ import annotations

from jobs.warehouse.store import Warehouse
from schemas.tables import BRONZE

# manifest and header fields that belong to the audio (publish copies them into gold)
AUDIO_FIELDS = ("reference_text", "language_hint", "speaker")


def live_files(spark, warehouse: Warehouse):
    """bronze rows of files that exist now and probed fine (one per URI)."""
    return spark.read.format("delta").load(warehouse.path(BRONZE)).where(
        "error_code IS NULL AND deleted_at IS NULL")


def _first_set(field: str):
    """The field's value at the first URI (in URI order) that has one: deterministic when identical
    audio is listed twice with different manifest entries."""
    from pyspark.sql import functions as F

    candidates = F.collect_list(F.when(F.col(field).isNotNull(), F.struct("uri", field)))
    return F.get(F.array_sort(candidates), 0)[field].alias(field)


def audio_view(spark, warehouse: Warehouse):
    """One row per live audio_id: `uri` (the first URI), `uris`, manifest fields, header facts and
    `inputs_hash` (changes whenever any of them does: a URI added or gone, a manifest field edited)."""
    from pyspark.sql import functions as F

    view = live_files(spark, warehouse).groupBy("audio_id").agg(
        F.min("uri").alias("uri"),
        F.array_sort(F.collect_set("uri")).alias("uris"),
        *[_first_set(f) for f in AUDIO_FIELDS],
        F.max("duration_s").alias("duration_s"),
        F.max("sample_rate").alias("sample_rate"),
        F.max("channels").alias("channels"),
        F.min("source").alias("source"),
    )
    hashed = F.to_json(F.struct("uris", *AUDIO_FIELDS, "sample_rate", "channels"))
    return view.withColumn("inputs_hash", F.substring(F.sha2(hashed, 256), 1, 16))


def meta_hash(columns: tuple[str, ...]):
    """Hash of the metadata an annotator reads (its `meta_inputs`), kept in its result's `inputs_hash`."""
    from pyspark.sql import functions as F

    joined = F.concat_ws("\u001f", *[F.coalesce(F.col(c).cast("string"), F.lit("")) for c in columns])
    return F.substring(F.sha2(joined, 256), 1, 16)
