"""silver.annotations: the fixed struct columns. The table's annotator columns come from the annotators'
output schemas, so the full table schema is assembled above the annotators, in jobs.warehouse.catalog."""
from __future__ import annotations

from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    MapType,
    StringType,
    StructField,
    StructType,
)

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
