"""A class-data-sharing (CDS) archive of the classes a local voxlake driver loads, made once by `make setup`.

Every `voxlake` command starts a JVM that loads and verifies some 20,000 classes of Spark and Delta before it
does any work. Java 17 can write the loaded classes, already parsed and verified, to an archive
(`-XX:ArchiveClassesAtExit`) that later JVMs map at start (`-XX:SharedArchiveFile`). The archive is only valid
for the Java build and the exact class path it was made with (the JVM checks both, and falls back to loading
classes normally with a one-line warning when they differ), so the file name carries a hash of both: a Java
upgrade, a new pyspark or new Delta jars simply mean no archive until `make setup` makes a new one.

Classes only reach the archive from the JVM's own class path, not from jars added at run time (`spark.jars`):
that is why a local session puts Delta's jars on the driver class path (see jobs.session). Signed jars
(janino, Spark's code generator) are skipped by the JVM.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

ARCHIVE_DIR = Path(os.environ.get("VOXLAKE_CDS_DIR", Path(__file__).resolve().parent.parent / ".deps" / "jvm"))


def java_binary() -> str | None:
    """The java that pyspark's launcher runs: $JAVA_HOME/bin/java, else the one on PATH (as spark-class does)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


def _spark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def _fingerprint(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        st = path.stat()
        out.append(f"{path}:{st.st_size}:{int(st.st_mtime)}")
    return out


def archive_path(driver_class_path: list[str]) -> Path | None:
    """Where the archive for this Java and this class path lives (None when there is no java at all)."""
    java = java_binary()
    if not java:
        return None
    spark_jars = sorted(_spark_jars_dir().glob("*.jar"))
    parts = _fingerprint([Path(java).resolve()]) + _fingerprint([Path(p) for p in driver_class_path])
    parts += _fingerprint(spark_jars)
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-classes-{digest}.jsa"


def usable_archive(driver_class_path: list[str]) -> Path | None:
    """The archive when one was made for exactly this Java and class path, else None."""
    try:
        path = archive_path(driver_class_path)
    except OSError:  # a jar vanished: no archive, Spark's own start will say what is missing
        return None
    return path if path is not None and path.is_file() else None


def _exercise(warehouse: str, dump_to: str) -> None:
    """Run, in this process's own JVM, the kinds of Spark work a voxlake command does, then exit so the
    JVM writes what it loaded to `dump_to`."""
    import pandas as pd

    from jobs.config import load_config
    from jobs.session import build_session

    config = load_config(overrides={"warehouse": warehouse})
    spark = build_session(config, app_name="voxlake-class-archive", archive_classes_to=dump_to)
    table = str(Path(warehouse, "t"))
    spark.range(200).selectExpr("id", "cast(id as string) AS name", "id * 0.5 AS seconds") \
        .write.format("delta").save(table)
    spark.sql(f"""MERGE INTO delta.`{table}` AS t
                  USING (SELECT id, 'x' AS name, 1.0 AS seconds FROM range(150, 250)) AS s ON t.id = s.id
                  WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *""")

    def double(batches):
        for frame in batches:
            yield pd.DataFrame({"id": frame["id"], "seconds": frame["seconds"] * 2})

    df = spark.read.format("delta").load(table)
    df.mapInPandas(double, "id long, seconds double").groupBy().sum("seconds").collect()
    df.createOrReplaceTempView("t")
    spark.sql("SELECT name, count(*), max(seconds) FROM t WHERE id > 10 GROUP BY name ORDER BY 2 DESC").collect()
    spark.sql(f"DESCRIBE HISTORY delta.`{table}`").collect()
    spark.stop()


def prepare() -> int:
    """Make the archive for the current Java and class path unless it exists; 0 when there is one after."""
    from jobs.session import local_delta_jars

    class_path = local_delta_jars()
    target = archive_path(class_path)
    if target is None:
        print("class archive: no java found; skipped")
        return 0
    if target.is_file():
        print(f"class archive: {target} is current")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="voxlake-cds-") as tmp:
        dump = Path(tmp, "classes.jsa")
        done = subprocess.run(
            [sys.executable, "-m", "jobs.class_archive", "--exercise", str(Path(tmp, "wh")), "--dump-to", str(dump)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if done.returncode != 0 or not dump.is_file():
            tail = "\n".join(done.stdout.splitlines()[-15:])
            print(f"class archive: not made (exit {done.returncode}); commands start without it\n{tail}")
            return 0  # an optimisation only: setup goes on
        for old in target.parent.glob("spark-classes-*.jsa"):  # archives for an earlier Java/class path
            old.unlink()
        staged = target.with_suffix(".tmp")  # copied beside the target first: the rename is then atomic
        staged.unlink(missing_ok=True)
        shutil.copyfile(dump, staged)
        os.replace(staged, target)
    print(f"class archive: wrote {target} ({target.stat().st_size / 2**20:.0f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", metavar="WAREHOUSE", help=argparse.SUPPRESS)
    parser.add_argument("--dump-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exercise:
        _exercise(args.exercise, args.dump_to)
        return 0
    return prepare()


if __name__ == "__main__":
    raise SystemExit(main())
