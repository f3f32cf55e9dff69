"""The Spark session factory.

Locally (no master given) it builds `local[*]` with Delta Lake from jars fetched by `make setup`.
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

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DELTA_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.3.1"
DELTA_JARS_DIR = Path(os.environ.get("VOXLAKE_JARS_DIR", REPO_ROOT / ".deps" / "jars"))
# Hadoop's S3A connector (hadoop-aws + the AWS SDK modules it needs), fetched by `make setup-s3`
S3A_JARS_DIR = Path(os.environ.get("VOXLAKE_S3A_JARS_DIR", REPO_ROOT / ".deps" / "s3a-jars"))
IVY_DIR = REPO_ROOT / ".deps" / "ivy"
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


def local_delta_jars() -> list[str]:
    """Delta's jars from `make setup` (a local driver puts them on its class path: see the class archive)."""
    if not DELTA_JARS_DIR.is_dir():
        return []
    return sorted(str(p) for p in DELTA_JARS_DIR.glob("*.jar"))


def _local_s3a_jars(given: dict[str, str]) -> list[str]:
    """The S3A jars from `make setup-s3`, unless spark-submit was given hadoop-aws itself."""
    if any("hadoop-aws" in given.get(k, "") for k in ("spark.jars.packages", "spark.jars")):
        return []
    if not (S3A_JARS_DIR / ".ready").exists():
        return []
    return sorted(str(p) for p in S3A_JARS_DIR.glob("*.jar"))


def _submitted_conf() -> dict[str, str]:
    """Settings spark-submit handed to this driver (empty when run as a plain Python program).

    Under spark-submit the JVM is already up (PYSPARK_GATEWAY_PORT is set): connect to it first, or
    SparkConf() reads nothing and our local defaults would override the master it was given.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


QUICK_JIT_MAX_CORES = 2  # `quick_jit: auto` compiles with C1 only on machines this small


def quick_jit_wanted(setting, cores: int | None = None) -> bool:
    """Whether a local driver JVM compiles with C1 only: `spark.quick_jit` true/false, or auto.

    On 2 cores the JIT's C2 compiler thread took 11.3 s of CPU in a 15 s no-op ingest (-XX:+CITime):
    with one core of two compiling, every command waited for it. With C1 only, that no-op took 10-11 s
    instead of 15 s, and whole `voxlake run`s over 10,000 and 100,000 tiny files were 14 % and 10 %
    shorter side by side (BENCHMARKS.md, "Fixed cost" and "Driver cost"), although C1's code runs hot
    loops slower. `auto` keeps Java's full JIT on larger machines, where this was not measured and
    compiler threads take a smaller share of the cores.
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


def build_session(config: Config, app_name: str | None = None, archive_classes_to: str | None = None):
    """Create (or reuse) the SparkSession for a job, with Delta and sane audio-workload defaults.

    `archive_classes_to` is for jobs.class_archive only: the JVM writes the classes it loaded there at exit.
    """
    _check_java()
    from pyspark.sql import SparkSession

    spark_cfg = config.section("spark")
    user_conf = {key: str(value) for key, value in (spark_cfg.get("conf") or {}).items()}
    submitted = _submitted_conf()
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
    master = user_conf.get("spark.master") or spark_cfg.get("master", "local[*]")  # unless spark-submit gave one
    # A local driver is its own executor (not so local-cluster[...], whose executors are JVMs of their own):
    # Delta's jars can sit on the JVM's class path, where the class archive (jobs.class_archive) can hold
    # them, unless the user set that class path themselves.
    on_class_path = (
        "spark.master" not in given and (master == "local" or master.startswith("local[")) and not delta_given
        and "spark.driver.extraClassPath" not in user_conf
    )
    if "spark.master" not in given:
        conf["spark.master"] = master
        conf["spark.ui.enabled"] = "false"
        conf["spark.driver.memory"] = spark_cfg.get("driver_memory", "2g")
        conf["spark.ui.showConsoleProgress"] = "false"
        # small local tables: Delta's log replay and shuffles default to 50/200 partitions, which costs
        # seconds per operation on a laptop; a cluster keeps Spark's and Delta's own defaults
        cores = os.cpu_count() or 2
        conf["spark.sql.shuffle.partitions"] = str(spark_cfg.get("shuffle_partitions") or max(2, cores))
        conf["spark.databricks.delta.snapshotPartitions"] = str(max(1, min(cores, 8)))
        # Delta's VACUUM lists a table in this many tasks (Spark's default: 10,000); `maintain` of a 9-file
        # warehouse took 248 s with the default on 2 cores, 53 s with this
        conf["spark.sql.sources.parallelPartitionDiscovery.parallelism"] = str(max(2, cores))
        # the class archive saves seconds of JVM start per command (measured in BENCHMARKS.md, "Fixed cost");
        # spark.conf may set spark.driver.extraJavaOptions itself: the config wins, as below
        archive_flag = ""
        if archive_classes_to:
            archive_flag = f"-XX:ArchiveClassesAtExit={archive_classes_to}"
        elif on_class_path and spark_cfg.get("class_archive", True):
            from jobs.class_archive import usable_archive

            archive = usable_archive(local_delta_jars())
            archive_flag = f"-XX:SharedArchiveFile={archive}" if archive else ""
            if not archive:
                log.debug("no class archive for this Java and class path (`make setup` makes one)")
        conf["spark.driver.extraJavaOptions"] = _java_options(archive_flag,
                                                              quick_jit_wanted(spark_cfg.get("quick_jit", "auto")))
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
    s3a_jars = _local_s3a_jars(given)
    if s3a_jars:
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars") or given.get("spark.jars"), *s3a_jars]))
    conf.update(user_conf)
    for key in list(conf):  # what spark-submit was given wins over our defaults
        if key in given and key not in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog"):
            conf.pop(key)

    builder = SparkSession.builder.appName(app_name or spark_cfg.get("app_name", "voxlake"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spark_cfg.get("log_level", "WARN"))
    _check_delta(spark)
    return spark


def _check_delta(spark) -> None:
    try:
        spark.sparkContext._jvm.java.lang.Class.forName(
            "io.delta.sql.DeltaSparkSessionExtension",
            True,
            spark.sparkContext._jvm.java.lang.Thread.currentThread().getContextClassLoader(),
        )
    except Exception:
        raise SessionError(
            "Spark started without Delta Lake on its classpath. Run `make setup`, or pass "
            f"`--packages {DELTA_PACKAGE}` to spark-submit."
        ) from None
