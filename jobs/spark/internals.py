"""The one door to pyspark's private parts (pinned: pyspark 4.1.1).

pyspark has no public API for a few things voxlake needs from the driver's JVM: Hadoop's configuration
and FileSystem (the warehouse's small files, object-store checks), a Dataset built in the JVM from a
file index (a folder listing that never passes through Python), the settings spark-submit handed a
driver before its session exists, and a class lookup (is Delta on the class path?). Every use of
`_jvm`, `_jsc`, `_jdf`, `_jsparkSession`, `SparkContext._ensure_initialized` and the `DataFrame(jdf,
session)` constructor goes through the functions below, and nowhere else. tests/test_third_party_internals.py
checks that these names still exist and fails naming this module when a pyspark upgrade removes one.
"""
from __future__ import annotations

# what this module reaches for, checked by the test: (object, attribute) pairs by dotted path
PRIVATE_NAMES = (
    ("pyspark.SparkContext", "_jvm"),
    ("pyspark.SparkContext", "_jsc"),
    ("pyspark.SparkContext", "_ensure_initialized"),
    ("pyspark.sql.DataFrame", "_jdf"),
    ("pyspark.sql.SparkSession", "_jsparkSession"),
)


def jvm(spark):
    """The py4j view of the driver JVM (`spark.sparkContext._jvm`)."""
    return spark.sparkContext._jvm


def hadoop_conf(spark):
    """The session's Hadoop Configuration (the `spark.hadoop.*` settings, core-site.xml...)."""
    return spark.sparkContext._jsc.hadoopConfiguration()


def hadoop_fs(spark, path: str):
    """(Hadoop FileSystem, Hadoop Path) for `path`: local folders and object stores alike."""
    hpath = jvm(spark).org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(hadoop_conf(spark)), hpath


def input_files_dataframe(spark, df):
    """A one-column (`value`) DataFrame of `df`'s input files, built in the JVM from Spark's file index
    (`Dataset.inputFiles`), so that a listing's paths never travel through the Python driver."""
    from pyspark.sql import DataFrame

    j = jvm(spark)
    dataset = spark._jsparkSession.createDataset(
        j.scala.collection.immutable.ArraySeq.unsafeWrapArray(df._jdf.inputFiles()),
        j.org.apache.spark.sql.Encoders.STRING())
    return DataFrame(dataset.toDF(), spark)


def submitted_conf() -> dict[str, str]:
    """Settings spark-submit handed to this driver (empty when run as a plain Python program).

    Under spark-submit the JVM is already up (PYSPARK_GATEWAY_PORT is set): connect to it first, or
    SparkConf() reads nothing and local defaults would override the master it was given.
    """
    import os

    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def class_loadable(spark, name: str) -> bool:
    """Whether the driver JVM's context class loader finds class `name` (a jar on the class path)."""
    j = jvm(spark)
    try:
        j.java.lang.Class.forName(name, True, j.java.lang.Thread.currentThread().getContextClassLoader())
        return True
    except Exception:
        return False


def jvm_heap_used_bytes(spark, collect_garbage: bool = False) -> int:
    """The driver JVM's used heap (benchmarks), after a GC when asked."""
    runtime = jvm(spark).java.lang.Runtime.getRuntime()
    if collect_garbage:
        jvm(spark).java.lang.System.gc()
    return int(runtime.totalMemory() - runtime.freeMemory())


# the loggers pyspark.errors' captured exceptions write to when they are raised (PySparkLogger, JSON lines
# on stderr holding the whole Java stack); named in pyspark/errors/exceptions/base.py
QUERY_CONTEXT_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def quiet_query_context_loggers(quiet: bool) -> None:
    """Keep pyspark's per-exception JSON log lines off the console (`quiet`): voxlake reports the error
    in one line of its own; with -v they stay, as the debug trace."""
    from pyspark.logger import PySparkLogger

    for name in QUERY_CONTEXT_LOGGERS:
        PySparkLogger.getLogger(name).disabled = quiet
