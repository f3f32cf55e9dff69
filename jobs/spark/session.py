"""The Spark session factory.

Locally it builds the configured local master (`spark.master`) with Delta Lake from the jars `make setup`
fetched.
Under spark-submit the master and the conf it was given win; `--packages io.delta:...` or `--jars` may
provide Delta instead of the local jars. Either way it fails early, with a message that says what to do,
when Java or Delta is missing (otherwise Spark starts fine and every Delta call fails much later).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from jobs.config import Config
from jobs.spark import internals
from jobs.spark.class_archive import usable_archive
from jobs.spark.jars import DELTA_JARS_DIR, DELTA_PACKAGE, IVY_DIR, local_delta_jars, local_s3a_jars

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


class SessionError(RuntimeError):
    """The environment cannot run Spark + Delta; the message says how to fix it."""


def _check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return
    if shutil.which("java"):
        return
    raise SessionError(
        "Java was not found: Spark needs a Java 17 runtime. Install one (e.g. `apt-get install "
        "openjdk-17-jre-headless`) or set JAVA_HOME."
    )


QUICK_JIT_MAX_CORES = 2  # `quick_jit: auto` compiles with C1 only on machines this small


def quick_jit_wanted(setting, cores: int | None = None) -> bool:
    """Whether a local driver JVM compiles with C1 only: `spark.quick_jit` true/false, or auto.

    On a small machine the JIT's C2 compiler thread takes a core for much of a short command, and every
    command waits for it; C1's code runs hot loops slower, but whole runs finished sooner with it on
    2 cores (docs/jvm-startup.md, BENCHMARKS.md "Fixed cost" and "Driver cost"). `auto` keeps Java's
    full JIT on larger machines, where compiler threads take a smaller share of the cores.
    """
    if setting == "auto":
        return (cores or os.cpu_count() or 1) <= QUICK_JIT_MAX_CORES
    return bool(setting)


def _java_options(class_archive_flag: str, quick_jit: bool) -> str:
    """The local driver JVM's options.

    A quiet console: our log4j2 settings (warnings, minus the ones nobody can act on). `quick_jit`: the
    JIT stops at C1 (-XX:TieredStopAtLevel=1; see quick_jit_wanted). C1 alone shrinks the code cache to
    48 MiB, which `make run` filled ("CodeCache is full. Compiler has been disabled."), so the full
    240 MiB cache is kept.
    """
    quick = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m" if quick_jit else ""
    return " ".join(filter(None, [f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}", class_archive_flag,
                                  quick]))


def build_session(config: Config, app_name: str, archive_classes_to: str | None = None):
    """Create (or reuse) the SparkSession for a job, with Delta and sane audio-workload defaults.

    `archive_classes_to` is for jobs.spark.make_class_archive only: the JVM writes the classes it loaded
    there at exit.
    """
    _check_java()
    from pyspark.sql import SparkSession

    spark_cfg = config.spark
    user_conf = {key: str(value) for key, value in spark_cfg.conf.items()}
    submitted = internals.submitted_conf()
    given = dict(submitted)
    conf: dict[str, str] = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.jars.ivy": str(IVY_DIR),
    }
    delta_given = any(
        "delta" in given.get(k, "") for k in ("spark.jars.packages", "spark.jars")
    )
    master = user_conf.get("spark.master") or spark_cfg.master  # unless spark-submit gave one
    # A local driver is its own executor (not so local-cluster[...], whose executors are JVMs of their own):
    # Delta's jars can sit on the JVM's class path, where the class archive (jobs.spark.class_archive) can hold
    # them, unless the user set that class path themselves.
    on_class_path = (
        "spark.master" not in given and (master == "local" or master.startswith("local[")) and not delta_given
        and "spark.driver.extraClassPath" not in user_conf
    )
    if "spark.master" not in given:
        conf["spark.master"] = master
        conf["spark.ui.enabled"] = "false"
        conf["spark.driver.memory"] = spark_cfg.driver_memory
        conf["spark.ui.showConsoleProgress"] = "false"
        # small local tables: Delta's log replay and shuffles default to 50/200 partitions, which costs
        # seconds per operation on a laptop; a cluster keeps Spark's and Delta's own defaults
        cores = os.cpu_count() or 2
        conf["spark.sql.shuffle.partitions"] = str(spark_cfg.shuffle_partitions or max(2, cores))
        conf["spark.databricks.delta.snapshotPartitions"] = str(max(1, min(cores, 8)))
        # Delta's VACUUM lists a table in this many tasks (Spark's default: 10,000, each a fixed cost that
        # made `maintain` of a small local warehouse take minutes)
        conf["spark.sql.sources.parallelPartitionDiscovery.parallelism"] = str(max(2, cores))
        # the class archive saves JVM start time per command (BENCHMARKS.md, "Fixed cost"); spark.conf may
        # set spark.driver.extraJavaOptions itself: the config wins, as below
        archive_flag = ""
        if archive_classes_to:
            archive_flag = f"-XX:ArchiveClassesAtExit={archive_classes_to}"
        elif on_class_path and spark_cfg.class_archive:
            archive = usable_archive(local_delta_jars())
            archive_flag = f"-XX:SharedArchiveFile={archive}" if archive else ""
            if not archive:
                log.debug("no class archive for this Java and class path (`make setup` makes one)")
        conf["spark.driver.extraJavaOptions"] = _java_options(archive_flag,
                                                              quick_jit_wanted(spark_cfg.quick_jit))
        # no "hostname resolves to a loopback address" warning (local mode binds to the loopback anyway)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if not delta_given:
        jars = local_delta_jars()
        if not jars:
            raise SessionError(
                f"Delta Lake jars not found in {DELTA_JARS_DIR}. Run `make setup` (it fetches them with "
                f"Maven), set VOXLAKE_JARS_DIR, or under spark-submit pass `--packages {DELTA_PACKAGE}`."
            )
        if on_class_path:
            conf["spark.driver.extraClassPath"] = os.pathsep.join(jars)
        else:
            conf["spark.jars"] = ",".join(jars)
    s3a_jars = local_s3a_jars(given)
    if s3a_jars:
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars") or given.get("spark.jars"), *s3a_jars]))
    conf.update(user_conf)
    for key in list(conf):  # what spark-submit was given wins over our defaults
        if key in given and key not in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog"):
            conf.pop(key)

    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spark_cfg.log_level)
    _check_delta(spark)
    return spark


def _check_delta(spark) -> None:
    if not internals.class_loadable(spark, "io.delta.sql.DeltaSparkSessionExtension"):
        raise SessionError(
            "Spark started without Delta Lake on its classpath. Run `make setup`, or pass "
            f"`--packages {DELTA_PACKAGE}` to spark-submit."
        )
