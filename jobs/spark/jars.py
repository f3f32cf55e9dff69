"""Where a local driver finds the jars `make setup` fetched: Delta Lake's and Hadoop's S3A connector."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DELTA_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.3.1"
S3A_PACKAGE = "org.apache.hadoop:hadoop-aws:3.4.2"
DELTA_JARS_DIR = Path(os.environ.get("VOXLAKE_JARS_DIR", REPO_ROOT / ".deps" / "jars"))
# Hadoop's S3A connector (hadoop-aws + the AWS SDK modules it needs), fetched by `make setup-s3`
S3A_JARS_DIR = Path(os.environ.get("VOXLAKE_S3A_JARS_DIR", REPO_ROOT / ".deps" / "s3a-jars"))
IVY_DIR = REPO_ROOT / ".deps" / "ivy"


def local_delta_jars() -> list[str]:
    """Delta's jars from `make setup` (a local driver puts them on its class path: see the class archive)."""
    if not DELTA_JARS_DIR.is_dir():
        return []
    return sorted(str(p) for p in DELTA_JARS_DIR.glob("*.jar"))


def local_s3a_jars(given: dict[str, str]) -> list[str]:
    """The S3A jars from `make setup-s3`, unless spark-submit was given hadoop-aws itself."""
    if any("hadoop-aws" in given.get(k, "") for k in ("spark.jars.packages", "spark.jars")):
        return []
    if not (S3A_JARS_DIR / ".ready").exists():
        return []
    return sorted(str(p) for p in S3A_JARS_DIR.glob("*.jar"))
