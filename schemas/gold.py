"""gold.utterances, gold.segments and gold.clips: curated, flat, SQL-friendly (partitioned by language)."""
from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.tables import TableSpec

UTTERANCE_COLUMNS = [
    ("audio_id", StringType(), False), ("uri", StringType(), False),
    ("uris", ArrayType(StringType()), True),  # every current URI holding these bytes (uri is the first)
    ("language", StringType(), False),
    ("duration_s", DoubleType(), False), ("sample_rate", IntegerType(), True), ("channels", IntegerType(), True),
    ("language_prob", DoubleType(), True), ("transcript", StringType(), False),
    ("reference_text", StringType(), True), ("speaker", StringType(), True),
    ("lufs", DoubleType(), True), ("peak_dbfs", DoubleType(), True), ("rms_dbfs", DoubleType(), True),
    ("clipping_ratio", DoubleType(), True), ("snr_db", DoubleType(), True), ("speech_ratio", DoubleType(), True),
    ("speech_s", DoubleType(), True), ("effective_hz", DoubleType(), True), ("f0_median_hz", DoubleType(), True),
    ("dnsmos_ovrl", DoubleType(), True), ("dnsmos_sig", DoubleType(), True), ("dnsmos_bak", DoubleType(), True),
    ("dnsmos_p808", DoubleType(), True), ("quality_band", StringType(), True), ("words_per_s", DoubleType(), True),
    ("wer", DoubleType(), True), ("has_pii", BooleanType(), True), ("asr_model", StringType(), True),
    ("asr_model_sha256", StringType(), True), ("recipe_hash", StringType(), False),
    ("annotated_at", TimestampType(), True), ("published_at", TimestampType(), True),
    ("publish_run_id", StringType(), True),
    # added with the speaker, events, distillmos and fingerprint annotators and `voxlake link`
    ("n_speakers", IntegerType(), True), ("speaker_cluster_id", StringType(), True),
    ("music_ratio", DoubleType(), True), ("event_top", StringType(), True), ("distillmos", DoubleType(), True),
    ("plcmos", DoubleType(), True), ("duplicate_group_id", StringType(), True),
    # added with clips: how many of the file's clips gold.clips holds, and their seconds
    ("clips_curated", IntegerType(), True), ("curated_s", DoubleType(), True),
]
UTTERANCES_SCHEMA = StructType([StructField(n, t, nullable) for n, t, nullable in UTTERANCE_COLUMNS])

WORD = StructType([StructField("word", StringType()), StructField("start_s", DoubleType()),
                   StructField("end_s", DoubleType()), StructField("probability", DoubleType())])
SEGMENTS_SCHEMA = StructType([
    StructField("audio_id", StringType(), False),
    StructField("segment_id", IntegerType(), False),
    StructField("language", StringType(), False),
    StructField("start_s", DoubleType()),
    StructField("end_s", DoubleType()),
    StructField("text", StringType()),
    StructField("avg_logprob", DoubleType()),
    StructField("no_speech_prob", DoubleType()),
    StructField("compression_ratio", DoubleType()),
    StructField("temperature", DoubleType()),
    StructField("words", ArrayType(WORD)),
])

# One row per curated clip (annotators.clips cut it, the clip suite passed it): the training unit.
CLIPS_SCHEMA = StructType([
    StructField("clip_id", StringType(), False),  # <audio_id>-<start ms>-<end ms>
    StructField("audio_id", StringType(), False),
    StructField("uri", StringType(), False),
    StructField("start_s", DoubleType(), False),
    StructField("end_s", DoubleType(), False),
    StructField("duration_s", DoubleType(), False),
    StructField("language", StringType(), False),
    StructField("language_prob", DoubleType()),
    StructField("text", StringType(), False),
    StructField("words", ArrayType(WORD)),  # times relative to the clip's start
    StructField("speaker", StringType()),  # the manifest's speaker (as in gold.utterances)
    StructField("speaker_label", IntegerType()),  # the file-local label of the clip's main speaker
    StructField("speaker_cluster_id", StringType()),  # the archive-wide cluster, where `link` can tell
    StructField("speaker_purity", DoubleType()),
    StructField("snr_db", DoubleType()),
    StructField("dnsmos_ovrl", DoubleType()),
    StructField("distillmos", DoubleType()),
    StructField("speech_ratio", DoubleType()),
    StructField("music_ratio", DoubleType()),
    StructField("mean_word_prob", DoubleType()),
    StructField("avg_logprob", DoubleType()),
    StructField("words_per_s", DoubleType()),
    StructField("has_pii", BooleanType()),
    StructField("whole_file", BooleanType()),  # the recording is this one clip
    StructField("recipe_hash", StringType(), False),
    StructField("clip_params_hash", StringType(), False),
    StructField("published_at", TimestampType()),
    StructField("publish_run_id", StringType()),
])

UTTERANCES = TableSpec("gold", "utterances", UTTERANCES_SCHEMA, ("language",))
CLIPS = TableSpec("gold", "clips", CLIPS_SCHEMA, ("language",))
SEGMENTS = TableSpec("gold", "segments", SEGMENTS_SCHEMA, ("language",))

# Delta CHECK constraints: the last line of defence if a suite is loosened by mistake.
CONSTRAINTS = {
    UTTERANCES: {
        "duration_positive": "duration_s > 0",
        "speech_ratio_unit": "speech_ratio IS NULL OR (speech_ratio >= 0 AND speech_ratio <= 1)",
        "dnsmos_range": "dnsmos_ovrl IS NULL OR (dnsmos_ovrl >= 1 AND dnsmos_ovrl <= 5)",
        "transcript_not_empty": "length(transcript) > 0",
    },
    SEGMENTS: {"segment_times": "start_s IS NULL OR end_s IS NULL OR end_s >= start_s"},
    CLIPS: {"clip_times": "end_s > start_s", "clip_text": "length(text) > 0"},
}
