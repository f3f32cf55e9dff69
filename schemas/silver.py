"""silver.annotations: one row per audio_id, one struct column per annotator (from its output schema)."""
from __future__ import annotations

from pyspark.sql.pandas.types import from_arrow_type
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from annotators.registry import ANNOTATORS, load_class
from schemas.tables import TableSpec

DECODE = StructType([
    StructField("status", StringType()),
    StructField("error_code", StringType()),
    StructField("error_message", StringType()),
    StructField("decoder", StringType()),
    StructField("duration_s", DoubleType()),
    StructField("native_rate", IntegerType()),
    StructField("channels", IntegerType()),
])

ANNOTATED_BY = StructType([
    StructField("run_id", StringType()),
    StructField("host", StringType()),
    StructField("pid", IntegerType()),
    StructField("load_id", StringType(), True, {"comment": "changes each time a worker loads its models"}),
    StructField("device", StringType()),
    StructField("gpu_address", StringType()),
    StructField("device_note", StringType()),
    StructField("threads", IntegerType()),
    StructField("seconds", MapType(StringType(), DoubleType())),
])


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
