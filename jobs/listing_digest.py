"""The last listing ingest found nothing to do with: lets a rerun over unchanged sources skip the plan.

Planning a rerun joins the whole listing with bronze, and on a local driver the first query over a Delta
table is the dearest part of a command (in a profile of a no-op ingest of 10,000 files, the plan's one
job, bronze's snapshot and the join, took 9.2 s of 20.8 s). Whether there is anything to do depends
only on the listing (each file's uri and fingerprint: size, mtime, manifest fields; the bad manifest
lines), on the run's sources and on bronze. So when a run has brought bronze in line with a listing (it
committed what the listing had, or found nothing to do), it records that listing's digest next to
bronze's version. A later run whose listing has the same digest, over the same sources, code and ingest
settings, while bronze is still at that version, has nothing to do either, and stops before the plan.

Anything that could change the answer changes the digest, the version or the record's context: a new,
changed or deleted file, an edited manifest, another source set (another record), any commit to bronze
(other sources' ingests, `voxlake maintain`), other ingest settings, another voxlake version. What the
full plan cannot see either (new bytes with the same size and mtime) stays unseen. The record is a small
JSON file under `<warehouse>/_state/ingest/`, one per source set, written through Hadoop's FileSystem
like the run claims; losing it costs one full plan, never a wrong answer.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from jobs.config import Config
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListingSurvey:
    """What one pass over the listing says: files listed, listed without size/mtime, their bytes (of
    those with a size) and the listing's digest."""

    listed: int
    unstated: int
    digest: str
    bytes: int = 0


def survey(listing, bad_lines, unstated) -> ListingSurvey:
    """One job over the listing (and bad manifest lines): counts, bytes and an order-free digest.

    The digest is two independent 64-bit hashes of each row, XORed over the rows (uris are unique in
    the listing, so no two rows cancel), plus the row counts: a set digest Spark computes without
    sorting or gathering anything on the driver.
    """
    from pyspark.sql import functions as F

    rows = listing.select(
        "uri", F.coalesce(F.col("fingerprint"), F.lit("")).alias("what"), F.lit(True).alias("_file"),
        unstated.alias("_unstated"), "size_bytes")
    if bad_lines is not None:
        rows = rows.unionByName(bad_lines.select(
            "uri", F.col("bad_line").alias("what"), F.lit(False).alias("_file"), F.lit(False).alias("_unstated"),
            F.lit(None).cast("long").alias("size_bytes")))
    row = rows.agg(
        F.count(F.when(F.col("_file"), 1)).alias("listed"),
        F.coalesce(F.sum("size_bytes"), F.lit(0)).alias("bytes"),
        F.count(F.when(~F.col("_file"), 1)).alias("bad"),
        F.count(F.when(F.col("_unstated"), 1)).alias("unstated"),
        F.bit_xor(F.xxhash64(F.lit("voxlake-a"), "uri", "what", "_file")).alias("h1"),
        F.bit_xor(F.xxhash64(F.lit("voxlake-b"), "uri", "what", "_file")).alias("h2"),
    ).first()
    digest = f"{int(row['listed'])}:{int(row['bad'])}:{int(row['h1'] or 0) & (2**64 - 1):016x}" \
             f"{int(row['h2'] or 0) & (2**64 - 1):016x}"
    return ListingSurvey(int(row["listed"]), int(row["unstated"]), digest, int(row["bytes"]))


def _record_path(warehouse: Warehouse, config: Config) -> str:
    """One record per source set (rewritten by each run over it, so records do not pile up)."""
    from jobs.sources import source_uris

    key = json.dumps(source_uris(config))
    return f"{warehouse.root}/_state/ingest/{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _context(config: Config) -> str:
    """What else must be the same for a recorded answer to hold: the ingest settings and the code."""
    from jobs.ledger import code_version

    blob = json.dumps({"ingest": config.section("ingest"), "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def unchanged(warehouse: Warehouse, config: Config, seen: ListingSurvey, bronze_version: int | None) -> bool:
    """True when this listing is the one recorded against bronze's current version, by this code."""
    path = _record_path(warehouse, config)
    if bronze_version is None or not warehouse.exists(path):
        return False
    try:
        recorded = json.loads(warehouse.read_text(path))
    except Exception:  # unreadable (cut short, foreign): plan as usual, the next record replaces it
        log.debug("listing record %s unreadable", path, exc_info=True)
        return False
    return (recorded.get("digest"), recorded.get("bronze_version"), recorded.get("context")) == (
        seen.digest, bronze_version, _context(config))


def remember(warehouse: Warehouse, config: Config, seen: ListingSurvey, bronze_version: int | None) -> None:
    """Record that bronze at `bronze_version` is in line with this listing (best effort)."""
    if bronze_version is None:
        return
    try:
        warehouse.write_text(_record_path(warehouse, config), json.dumps(
            {"digest": seen.digest, "bronze_version": bronze_version, "context": _context(config)}))
    except Exception:  # the next run plans in full; nothing is wrong
        log.warning("could not record the ingest listing digest", exc_info=True)
