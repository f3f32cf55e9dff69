"""Makes the class-data-sharing archive of jobs.spark.class_archive: what `make setup` runs.

    python -m jobs.spark.make_class_archive

A child process runs the kinds of Spark work a voxlake command does in its own JVM, which writes the
classes it loaded to the archive at exit. An archive that cannot be made is no error: commands then
start without one.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jobs.config import load_config
from jobs.spark.class_archive import archive_path
from jobs.spark.jars import local_delta_jars
from jobs.spark.session import build_session


def _exercise(warehouse: str, dump_to: str) -> None:
    """Run, in this process's own JVM, the kinds of Spark work a voxlake command does, then exit so the
    JVM writes what it loaded to `dump_to`."""
    import pandas as pd

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
            [sys.executable, "-m", "jobs.spark.make_class_archive", "--exercise", str(Path(tmp, "wh")), "--dump-to", str(dump)],
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
