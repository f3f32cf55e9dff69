"""A class-data-sharing (CDS) archive of the classes a local voxlake driver loads, made once by `make setup`.

Every `voxlake` command starts a JVM that loads and verifies some 20,000 classes of Spark and Delta before it
does any work. Java 17 can write the loaded classes, already parsed and verified, to an archive
(`-XX:ArchiveClassesAtExit`) that later JVMs map at start (`-XX:SharedArchiveFile`). The archive is only valid
for the Java build and the exact class path it was made with (the JVM checks both, and falls back to loading
classes normally with a one-line warning when they differ), so the file name carries a hash of both: a Java
upgrade, a new pyspark or new Delta jars simply mean no archive until `make setup` makes a new one.

Classes only reach the archive from the JVM's own class path, not from jars added at run time (`spark.jars`):
that is why a local session puts Delta's jars on the driver class path (see jobs.spark.session). Signed jars
(janino, Spark's code generator) are skipped by the JVM. `make setup` makes the archive with
jobs.spark.make_class_archive.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from jobs.spark.jars import REPO_ROOT

log = logging.getLogger(__name__)

ARCHIVE_DIR = Path(os.environ.get("VOXLAKE_CDS_DIR", REPO_ROOT / ".deps" / "jvm"))


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
