"""Open files named by URI inside executors: local paths directly, object storage through pyarrow's S3.

Every opener yields a binary file object, so probing and hashing stream the bytes and never hold a whole
file in memory. Hadoop-style `file:/x` URIs (what Spark's listing returns) map to the local path `/x`.
Remote objects are read three ways, each with the fewest requests for its job:
- `open_uri`: random access with ranged GETs (a probe reads a header and a tail, not the object);
- `open_stream`: one streamed GET (hashing reads every byte once, in order);
- `open_local_copy`: one streamed GET into a local temporary file (decoders seek and read in small
  blocks, which over ranged GETs would cost one request per block).
Errors of the object store are raised as OSError (FileNotFoundError when the object is gone), so the
per-file handlers turn them into that file's READ_FAILED / NOT_FOUND, never a failed task.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import unquote

from udfs.storage import StorageSettings, filesystem, scheme_of

COPY_CHUNK_BYTES = 8 << 20


def local_path(uri: str) -> str | None:
    """The local filesystem path for `file:` URIs and plain paths; None for remote URIs."""
    if uri.startswith("file://"):
        path = uri[len("file://"):]
    elif uri.startswith("file:"):
        path = uri[len("file:"):]
    elif scheme_of(uri):
        return None
    else:
        return uri
    # Spark's listing leaves spaces and non-ASCII as they are; a manifest may give an escaped URI
    if "%" in path and not os.path.exists(path):
        return unquote(path)
    return path


def to_uri(path: str) -> str:
    """The URI form voxlake stores for a path: `file:/abs/path` for local files, others unchanged."""
    if scheme_of(path) or path.startswith("file:"):
        return path
    return "file:" + os.path.abspath(path)


@contextmanager
def _store_errors(uri: str):
    """pyarrow raises ArrowInvalid/ArrowException for some store failures: make every one an OSError."""
    import pyarrow as pa

    try:
        yield
    except OSError:
        raise
    except pa.ArrowException as exc:
        raise OSError(f"{uri}: {type(exc).__name__}: {exc}") from exc


@contextmanager
def _open(uri: str, storage: StorageSettings | None, sequential: bool) -> Iterator[BinaryIO]:
    path = local_path(uri)
    if path is not None:
        with open(path, "rb", buffering=1 << 20) as f:
            yield f
        return
    with _store_errors(uri):
        fs, remote = filesystem(uri, storage)
        f = fs.open_input_stream(remote, buffer_size=COPY_CHUNK_BYTES) if sequential else \
            fs.open_input_file(remote)
    try:
        yield f
    finally:
        f.close()


def open_uri(uri: str, storage: StorageSettings | None = None):
    """A seekable file: local, or an object read with ranged GETs."""
    return _open(uri, storage, sequential=False)


def open_stream(uri: str, storage: StorageSettings | None = None):
    """A sequential stream (one GET for an object): for reading every byte once."""
    return _open(uri, storage, sequential=True)


@contextmanager
def open_local_copy(uri: str, storage: StorageSettings | None = None) -> Iterator[BinaryIO]:
    """A seekable local file: the file itself, or an object streamed into a temporary file (removed on
    exit; TMPDIR picks the disk). For decoders, which read the whole file in small seeks and reads."""
    path = local_path(uri)
    if path is not None:
        with open(path, "rb", buffering=1 << 20) as f:
            yield f
        return
    with tempfile.TemporaryFile(prefix="voxlake-") as tmp:
        with open_stream(uri, storage) as src, _store_errors(uri):
            shutil.copyfileobj(src, tmp, COPY_CHUNK_BYTES)
        tmp.seek(0)
        yield tmp


def stat_uri(uri: str, storage: StorageSettings | None = None) -> tuple[int, datetime]:
    """(size in bytes, modification time in UTC). Raises FileNotFoundError when absent."""
    path = local_path(uri)
    if path is not None:
        st = os.stat(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"not a file: {path}")
        return st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC)
    import pyarrow.fs as pafs

    with _store_errors(uri):
        fs, remote = filesystem(uri, storage)
        info = fs.get_file_info(remote)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"not found: {uri}")
    return info.size, info.mtime
