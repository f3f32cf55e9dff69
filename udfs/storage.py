"""Python-side filesystems for the URIs Spark reads through Hadoop: one set of settings for both sides.

Users configure object storage once, as Hadoop S3A properties (`spark.hadoop.fs.s3a.*` in the config's
`spark.conf` or spark-submit's `--conf`). Spark's listing and the Delta tables use them through Hadoop;
the executors' Python reads (probe, hash, decode) build a pyarrow `S3FileSystem` from the same properties,
which the driver collects into a `StorageSettings` and hands to the tasks explicitly. Hadoop's S3A and
pyarrow's S3 client are separate implementations, so this module maps the settings both understand and
says clearly which schemes it cannot read yet.

Mapped S3A properties (per-bucket `fs.s3a.bucket.<bucket>.<key>` overrides win, as in S3A):
endpoint, endpoint.region (or region), path.style.access, connection.ssl.enabled, access.key, secret.key,
session.token, aws.credentials.provider (anonymous only), connection.establish.timeout,
connection.timeout, attempts.maximum. Without keys in the properties, pyarrow falls back to the standard
AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance metadata), as S3A does.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from urllib.parse import urlparse

S3_SCHEMES = ("s3a", "s3", "s3n")
NOT_YET = {
    "gs": "Google Cloud Storage", "abfs": "Azure Data Lake Storage", "abfss": "Azure Data Lake Storage",
    "wasb": "Azure Blob Storage", "wasbs": "Azure Blob Storage", "hdfs": "HDFS",
}


class StorageConfigError(OSError):
    """A URI this build cannot read; the message says what to change. An OSError, so that inside a task
    it fails that one file (READ_FAILED, with this message), while the driver's checks stop the job."""


def scheme_of(uri: str) -> str:
    """'' for local paths and `file:` URIs, else the lower-case scheme."""
    scheme = urlparse(uri).scheme.lower()
    return "" if len(scheme) <= 1 or scheme == "file" else scheme


def is_remote(uri: str) -> bool:
    return scheme_of(uri) != ""


def check_supported(uri: str) -> None:
    scheme = scheme_of(uri)
    if scheme in ("",) + S3_SCHEMES:
        return
    what = NOT_YET.get(scheme)
    raise StorageConfigError(
        f"{uri}: {what + ' (' + scheme + '://)' if what else scheme + '://'} is not supported yet; "
        f"voxlake reads local paths and S3-compatible object storage (s3a://)"
    )


def _duration_s(text: str | None, default_unit: str = "ms") -> float | None:
    """Hadoop durations: '200s', '5m', '60000' (a bare number is in `default_unit`)."""
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*", str(text).lower())
    if not m:
        return None
    unit = m.group(2) or default_unit
    factor = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[unit]
    return float(m.group(1)) * factor


def _bool(text: str | None, default: bool) -> bool:
    if text is None or str(text).strip() == "":
        return default
    return str(text).strip().lower() == "true"


@dataclass(frozen=True)
class StorageSettings:
    """The `fs.s3a.*` Hadoop properties (keys without the prefix), as picklable data for the executors.

    The values may hold secrets: they are kept out of repr() and logs.
    """

    s3a: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> StorageSettings:
        """From Hadoop properties named with or without the `fs.s3a.` prefix."""
        clean = {}
        for key, value in props.items():
            key = key[len("fs.s3a."):] if key.startswith("fs.s3a.") else key
            if value is not None:
                clean[key] = str(value)
        return cls(tuple(sorted(clean.items())))

    def get(self, key: str, bucket: str | None = None) -> str | None:
        props = dict(self.s3a)
        if bucket and f"bucket.{bucket}.{key}" in props:
            return props[f"bucket.{bucket}.{key}"]
        return props.get(key)

    def s3_options(self, bucket: str) -> dict:
        """Keyword arguments for pyarrow's S3FileSystem for `bucket`."""
        import pyarrow.fs as pafs

        def get(key):
            return self.get(key, bucket)

        ssl = _bool(get("connection.ssl.enabled"), True)
        opts: dict = {}
        endpoint = (get("endpoint") or "").strip()
        region = get("endpoint.region") or get("region")
        path_style = _bool(get("path.style.access"), False)
        if endpoint and not re.fullmatch(r"(https?://)?s3(\.[a-z0-9-]+)?\.amazonaws\.com/?", endpoint):
            opts["endpoint_override"] = endpoint if "://" in endpoint else (
                ("https://" if ssl else "http://") + endpoint)
            # pyarrow addresses a custom endpoint path-style unless told otherwise; S3A the other way round
            opts["force_virtual_addressing"] = not path_style
        elif endpoint and not region:
            m = re.match(r"(?:https?://)?s3\.([a-z0-9-]+)\.amazonaws\.com", endpoint)
            region = m.group(1) if m else None
        if region:
            opts["region"] = region
        if not ssl and "endpoint_override" not in opts:
            opts["scheme"] = "http"
        access, secret = get("access.key"), get("secret.key")
        if access and secret:
            opts.update(access_key=access, secret_key=secret)
            if get("session.token"):
                opts["session_token"] = get("session.token")
        elif "AnonymousAWSCredentialsProvider" in (get("aws.credentials.provider") or ""):
            opts["anonymous"] = True
        connect = _duration_s(get("connection.establish.timeout"))
        request = _duration_s(get("connection.timeout"))
        if connect:
            opts["connect_timeout"] = connect
        if request:
            opts["request_timeout"] = request
        attempts = get("attempts.maximum")
        if attempts and attempts.strip().isdigit():
            opts["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=max(1, int(attempts)))
        return opts


_FILESYSTEMS: dict = {}
_LOCK = threading.Lock()


def filesystem(uri: str, settings: StorageSettings | None):
    """(pyarrow filesystem, path inside it) for a remote URI; one filesystem per bucket and settings."""
    import pyarrow.fs as pafs

    check_supported(uri)
    scheme = scheme_of(uri)
    if scheme not in S3_SCHEMES:
        raise StorageConfigError(f"{uri} is not an object-store URI")
    bucket, key_path = split_bucket(uri)
    settings = settings or StorageSettings()
    key = (bucket, settings)
    with _LOCK:
        fs = _FILESYSTEMS.get(key)
        if fs is None:
            fs = _FILESYSTEMS[key] = pafs.S3FileSystem(**settings.s3_options(bucket))
    return fs, f"{bucket}/{key_path}" if key_path else bucket


def split_bucket(uri: str) -> tuple[str, str]:
    """('bucket', 'key/inside') of `s3a://bucket/key/inside`. Split by hand, not with urlparse: object
    keys may hold '?' or '#', which a URL parser would cut off as a query or fragment."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageConfigError(f"{uri}: no bucket in the URI (expected s3a://BUCKET/KEY)")
    return bucket, key.rstrip("/")
