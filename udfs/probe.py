"""Executor side of ingest: stat, hash and probe each listed file (a mapInPandas function).

Every input row yields exactly one output row; a file that cannot be read gets an error code instead of
failing the task, so one bad file never fails the job.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pandas as pd

from schemas.errors import ErrorCode
from udfs.files import open_stream, open_uri, stat_uri
from udfs.headers import Probe, probe_bytes, probe_stream, sha256_stream
from udfs.storage import StorageSettings

log = logging.getLogger(__name__)

PROBE_COLUMNS = [
    "audio_id", "size_bytes", "modified_at", "container", "codec", "sample_rate", "channels",
    "bit_depth", "duration_s", "error_code", "error_message",
]


def _probe_one(uri: str, size, mtime, max_bytes: int, data: bytes | None,
               storage: StorageSettings | None = None) -> dict:
    import hashlib

    if data is not None:  # audio carried in a table's bytes column
        out = probe_bytes(data).as_dict() if len(data) <= max_bytes else Probe(
            error_code=ErrorCode.TOO_LARGE.value, error_message=f"{len(data)} bytes > {max_bytes}"
        ).as_dict()
        out.update(audio_id=hashlib.sha256(data).hexdigest(), size_bytes=len(data), modified_at=mtime)
        return out
    try:
        if size is None or pd.isna(size):
            size, mtime = stat_uri(uri, storage)
        with open_stream(uri, storage) as f:  # every byte once, in order (one GET for an object)
            audio_id = sha256_stream(f)
        if size > max_bytes:
            probe = Probe(
                error_code=ErrorCode.TOO_LARGE.value,
                error_message=f"{size} bytes is over ingest.max_file_bytes={max_bytes}",
            )
        else:
            with open_uri(uri, storage) as f:  # header and tail only (ranged GETs for an object)
                probe = probe_stream(f, int(size))
    except FileNotFoundError as exc:
        return dict(Probe(error_code=ErrorCode.NOT_FOUND.value, error_message=str(exc)).as_dict(),
                    audio_id=None, size_bytes=None, modified_at=None)
    except Exception as exc:  # OSError from the store, or anything unforeseen: this file's failure only
        if not isinstance(exc, OSError):
            log.exception("unexpected error reading %s", uri)
        return dict(Probe(error_code=ErrorCode.READ_FAILED.value,
                          error_message=f"{type(exc).__name__}: {exc}").as_dict(),
                    audio_id=None, size_bytes=None if pd.isna(size) else int(size), modified_at=mtime)
    out = probe.as_dict()
    out.update(audio_id=audio_id, size_bytes=int(size), modified_at=mtime)
    return out


def make_probe_fn(max_bytes: int, output_columns: list[str], storage: StorageSettings | None = None):
    """Build the mapInPandas function; `output_columns` is the order of the output schema."""

    def probe_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = []
            has_bytes = "content" in batch.columns
            for rec in batch.to_dict("records"):
                data = rec.get("content") if has_bytes else None
                result = _probe_one(rec["uri"], rec.get("size_bytes"), rec.get("modified_at"),
                                    max_bytes, data, storage)
                merged = {**rec, **result}
                merged.pop("content", None)
                rows.append(merged)
            out = pd.DataFrame(rows, columns=output_columns)
            for col in ("size_bytes", "sample_rate", "channels", "bit_depth"):
                out[col] = out[col].astype("Int64")
            out["modified_at"] = pd.to_datetime(out["modified_at"], utc=True)
            yield out

    return probe_batches


def make_stat_fn(storage: StorageSettings | None = None):
    """mapInPandas function that fills size_bytes/modified_at for rows listed without them.

    A missing file keeps nulls here; the probe then records NOT_FOUND for it.
    """

    def stat_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            sizes, mtimes = [], []
            for uri in batch["uri"]:
                try:
                    size, mtime = stat_uri(uri, storage)
                except OSError:
                    size, mtime = None, None
                sizes.append(size)
                mtimes.append(mtime)
            batch = batch.copy()
            batch["size_bytes"] = pd.array(sizes, dtype="Int64")
            batch["modified_at"] = pd.to_datetime(pd.Series(mtimes, dtype="object"), utc=True)
            yield batch

    return stat_batches
