"""Open files named by URI inside executors: local paths directly, anything else through pyarrow.fs.

Both yield seekable binary file objects, so probing and hashing stream the bytes and never hold a whole
file in memory. Hadoop-style `file:/x` URIs (what Spark's listing returns) map to the local path `/x`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import unquote, urlparse


def local_path(uri: str) -> str | None:
    """The local filesystem path for `file:` URIs and plain paths; None for remote URIs."""
    if uri.startswith("file://"):
        path = uri[len("file://"):]
    elif uri.startswith("file:"):
        path = uri[len("file:"):]
    elif urlparse(uri).scheme and len(urlparse(uri).scheme) > 1:
        return None
    else:
        return uri
    # Spark's listing leaves spaces and non-ASCII as they are; a manifest may give an escaped URI
    if "%" in path and not os.path.exists(path):
        return unquote(path)
    return path


def to_uri(path: str) -> str:
    """The URI form voxlake stores for a path: `file:/abs/path` for local files, others unchanged."""
    parsed = urlparse(path)
    if parsed.scheme and len(parsed.scheme) > 1:
        return path
    return "file:" + os.path.abspath(path)


@contextmanager
def open_uri(uri: str) -> Iterator[BinaryIO]:
    path = local_path(uri)
    if path is not None:
        with open(path, "rb", buffering=1 << 20) as f:
            yield f
        return
    import pyarrow.fs as pafs

    fs, remote = pafs.FileSystem.from_uri(uri)
    with fs.open_input_file(remote) as f:
        yield f


def stat_uri(uri: str) -> tuple[int, datetime]:
    """(size in bytes, modification time in UTC). Raises FileNotFoundError when absent."""
    path = local_path(uri)
    if path is not None:
        st = os.stat(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"not a file: {path}")
        return st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC)
    import pyarrow.fs as pafs

    fs, remote = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(remote)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"not found: {uri}")
    return info.size, info.mtime
