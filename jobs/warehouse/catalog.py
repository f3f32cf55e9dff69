"""Every table of the warehouse. silver.annotations has one struct column per annotator, taken from the
annotators' output schemas, so its spec is built here (above the annotators), not in schemas/."""
from __future__ import annotations

from pyspark.sql.pandas.types import from_arrow_type
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from annotators.registry import ANNOTATORS, load_class
from schemas.gold import CLIPS, CONSTRAINTS, SEGMENTS, UTTERANCES
from schemas.silver import ANNOTATED_BY, DECODE
from schemas.tables import BRONZE, CLIP_STATE, FILE_STATE, LINKS, RUNS, TableSpec

__all__ = ["BRONZE", "CLIPS", "CLIP_STATE", "CONSTRAINTS", "FILE_STATE", "LINKS", "RUNS", "SEGMENTS", "SILVER", "TABLES", "UTTERANCES",
           "annotator_type", "tables"]


def annotator_type(name: str):
    return from_arrow_type(load_class(name).output_schema())


def silver_schema() -> StructType:
    fields = [
        StructField("audio_id", StringType(), False),
        StructField("uri", StringType(), True, {"comment": "one of the URIs holding these bytes"}),
        StructField("duration_s", DoubleType()),
        StructField("decode", DECODE),
    ]
    fields += [StructField(name, annotator_type(name)) for name in ANNOTATORS]
    fields += [StructField("annotated_by", ANNOTATED_BY), StructField("updated_at", TimestampType())]
    return StructType(fields)


SILVER = TableSpec("silver", "annotations", silver_schema())
TABLES: tuple[TableSpec, ...] = (BRONZE, FILE_STATE, RUNS, SILVER, LINKS, UTTERANCES, SEGMENTS, CLIPS, CLIP_STATE)


def tables() -> tuple[TableSpec, ...]:
    """Every table, with silver's columns from the annotators registered now (plugins included)."""
    silver = TableSpec(SILVER.database, SILVER.name, silver_schema())
    return tuple(silver if t is SILVER else t for t in TABLES)
