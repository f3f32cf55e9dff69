"""The shape of voxlake's configuration: one frozen dataclass per section of `defaults.yaml`.

The classes say which keys exist and what type each value has; they hold no values. Every value comes
from `jobs/config/defaults.yaml` (the one place the defaults live), deep-merged with the user's `--config`
file and the command's flags, and is checked against a JSON Schema built from these classes
(jobs/config/schema.py) before any object is made. The code reads settings as attributes
(`config.annotate.file_timeout_s`), so a misspelt key is an AttributeError in the code and a "did you
mean" error in a user's file, never a silent fallback.

Typing rules the schema follows: `int` is a whole number, `float` any number, `X | None` may be null (a
threshold switched off, a value left to the environment), `Literal[...]` one of a few values, and
`dict[str, ...]` a free-form map whose keys are the user's own (Spark settings, annotator params,
plugins). Annotators keep their own parameter defaults (`default_params`, listed in the README).
The `clips:` section is annotators.clip_rules.Rules itself (the clips annotator's rules, named once).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from annotators.clip_rules import Rules as ClipsSettings  # the `clips:` section: how recordings are cut


@dataclass(frozen=True)
class SparkSettings:
    master: str  # local mode only; spark-submit's master wins
    driver_memory: str  # local mode only
    log_level: str  # Spark's own log level
    shuffle_partitions: int | None  # null: max(2, cores) in local mode; a cluster keeps its own
    class_archive: bool  # local mode: start the JVM from the class archive `make setup` made
    quick_jit: Literal["auto", True, False]  # local mode: the driver JVM compiles with C1 only
    conf: dict[str, Any]  # any extra spark.* settings


@dataclass(frozen=True)
class IngestSettings:
    extensions: list[str]
    max_file_bytes: int
    files_per_task: int
    bytes_per_task: int
    table_bytes_columns: list[str]
    table_path_columns: list[str]


@dataclass(frozen=True)
class AnnotateSettings:
    annotators: list[str]
    params: dict[str, dict[str, Any]]
    files_per_batch: int
    target_task_s: float
    max_duration_s: float
    file_timeout_s: float
    gpu_fallback: Literal["cpu", "fail"]
    strict: bool
    retry_codes: list[str]
    max_attempts: int
    commit_every_s: float
    batch_audio_s: float
    max_worker_deaths: int
    hard_limit_grace_s: float
    plugins: dict[str, str]
    cascade: bool


@dataclass(frozen=True)
class LinkSettings:
    speaker_similarity_min: float
    duplicate_similarity_min: float
    bucket_length: float
    hash_rows: int
    hash_bands: int
    minhash_tables: int
    max_rounds: int
    seed: int


@dataclass(frozen=True)
class MaintainSettings:
    after_run: bool
    vacuum: bool
    vacuum_retention_hours: float


@dataclass(frozen=True)
class RunSettings:
    max_files: int | None
    max_hours: float | None
    heartbeat_s: float
    dead_after_s: float
    lease_wait_s: float
    progress_log_s: float


@dataclass(frozen=True)
class ReportSettings:
    after_run: bool
    path: str | None


@dataclass(frozen=True)
class ExportSettings:
    shard_rows: int  # formats that point at the audio
    shard_mb: int  # formats that carry it


@dataclass(frozen=True)
class QualitySettings:
    docs_dir: str | None


@dataclass(frozen=True)
class Recipe:
    """The curation recipe: the values of the ${recipe.X} placeholders of expectations/files.yaml and
    clips.yaml. A null threshold switches its check off."""

    sample_rate_min: float | None
    effective_hz_min: float | None
    speech_ratio_min: float | None
    snr_db_min: float | None
    dnsmos_ovrl_min: float | None
    language_prob_min: float | None
    clipping_ratio_max: float | None
    quarantine_pii: bool | None
    music_ratio_max: float | None
    max_speakers: int | None
    speaker_purity_min: float | None  # with max_speakers 1: a clip's share of speech by its main speaker
    dedup: bool | None
    optional_annotators: list[str]


@dataclass(frozen=True)
class Critical:
    """The table-level suite's bounds (expectations/table.yaml's ${critical.X}); null: unbounded."""

    min_batch_files: int  # a smaller batch is judged together with the archive's earlier decisions
    max_rejected_share: float | None
    min_non_null_share: float | None
    mean_dnsmos_min: float | None
    mean_dnsmos_max: float | None
    median_snr_min: float | None
    median_snr_max: float | None


@dataclass(frozen=True)
class QualityBands:
    high: float
    medium: float


@dataclass(frozen=True)
class PublishSettings:
    recipe: Recipe
    commit_every_s: float
    critical: Critical
    quality_bands: QualityBands
    accept_run: str | None  # `voxlake publish --accept RUN_ID`: that blocked run's batch, reviewed


@dataclass(frozen=True)
class Settings:
    """Everything `defaults.yaml` declares (and nothing else)."""

    warehouse: str
    spark: SparkSettings
    ingest: IngestSettings
    annotate: AnnotateSettings
    link: LinkSettings
    maintain: MaintainSettings
    run: RunSettings
    report: ReportSettings
    export: ExportSettings
    quality: QualitySettings
    clips: ClipsSettings
    publish: PublishSettings


@dataclass(frozen=True)
class Config(Settings):
    """What a command runs with: the settings, and the inputs named on its command line (not config
    keys: a config file cannot set them)."""

    sources: tuple[str, ...] = field(default=(), metadata={"command_line": True})
    manifests: tuple[str, ...] = field(default=(), metadata={"command_line": True})

    def as_dict(self) -> dict:
        """The settings as the YAML tree they came from (without the command line's inputs)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(Settings)}

    def hash(self) -> str:
        """Stable hash of every setting (recorded in the run ledger)."""
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _plain(value):
    return asdict(value) if hasattr(value, "__dataclass_fields__") else value
