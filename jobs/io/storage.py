"""Object storage on the driver: the settings executors get, and a check before any work starts.

The S3A properties the session was given (`spark.hadoop.fs.s3a.*`) are read back from Hadoop's
configuration, so whatever the user set (config file, spark-submit --conf, core-site.xml) reaches the
executors' Python readers too (udfs.storage). Before a job touches its inputs, every bucket it names is
reached once through both clients (pyarrow, with short timeouts, then Hadoop's S3A): a wrong endpoint,
rejected credentials or a missing bucket stop the job there, with exit code 3 and the setting to fix,
instead of turning every file into a per-file failure.
"""
from __future__ import annotations

import logging

from jobs.config import Config, ConfigError
from jobs.spark import internals
from jobs.spark.jars import S3A_PACKAGE
from udfs.storage import (
    S3_SCHEMES,
    StorageConfigError,
    StorageSettings,
    check_supported,
    scheme_of,
    split_bucket,
)

log = logging.getLogger(__name__)

KEYS_HINT = ("set spark.hadoop.fs.s3a.access.key and spark.hadoop.fs.s3a.secret.key in the config's "
             "spark.conf (or --conf under spark-submit), or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")


class StorageError(RuntimeError):
    """Object storage cannot be used as configured; the message names the setting to fix (exit 3)."""


def storage_settings(spark) -> StorageSettings:
    """The session's `fs.s3a.*` Hadoop properties, for the executors' Python readers."""
    props = internals.hadoop_conf(spark).getPropsWithPrefix("fs.s3a.")
    return StorageSettings.from_properties({str(k): str(v) for k, v in dict(props).items()})


def job_uris(config: Config) -> list[str]:
    return [config.warehouse, *config.sources, *config.manifests]


def check_storage(spark, config: Config) -> StorageSettings:
    """Fail early (StorageError) when a bucket the job names cannot be reached as configured."""
    uris = job_uris(config)
    for uri in uris:
        try:
            check_supported(uri)
        except StorageConfigError as exc:
            raise ConfigError(str(exc)) from None
    remote = [u for u in uris if scheme_of(u) in S3_SCHEMES]
    settings = storage_settings(spark)
    if not remote:
        return settings
    _check_connector(spark)
    for bucket, uri in {split_bucket(u)[0]: u for u in remote}.items():
        _check_python_side(bucket, uri, settings)
        _check_hadoop_side(spark, bucket, uri, settings)
        log.info("object storage: s3a://%s reachable (%s)", bucket, _endpoint(settings, bucket))
    return settings


def _check_connector(spark) -> None:
    try:
        internals.jvm(spark).org.apache.hadoop.fs.FileSystem.getFileSystemClass("s3a", internals.hadoop_conf(spark))
    except Exception:
        raise StorageError(
            "s3a:// URIs need Hadoop's S3A connector, which is not on Spark's classpath: run "
            f"`make setup-s3` (voxlake then loads .deps/s3a-jars), or pass `--packages {S3A_PACKAGE}` to "
            "spark-submit"
        ) from None


def _explain(bucket: str, endpoint: str, text: str) -> str | None:
    """A message naming the setting to fix for the store errors a configuration causes; None otherwise."""
    low = text.lower()
    where = f"s3a://{bucket} at {endpoint}"
    if any(s in low for s in ("access_denied", "accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch",
                              "status code: 403", "forbidden", "no aws credentials", "noauthwithawsexception",
                              "unable to load credentials")):
        return f"{where}: the store rejected the request (wrong or missing credentials): {KEYS_HINT}"
    if any(s in low for s in ("network_connection", "could not connect", "couldn't connect",
                              "connection refused", "could not resolve", "unknownhost", "timed out",
                              "connecttimeout", "unable to execute http request")):
        return (f"{where}: cannot reach the object store: check spark.hadoop.fs.s3a.endpoint "
                "(and fs.s3a.connection.ssl.enabled, fs.s3a.path.style.access)")
    if any(s in low for s in ("no_such_bucket", "nosuchbucket", "unknownstoreexception",
                              "bucket does not exist")):
        return f"{where}: the bucket does not exist (check the URI, or fs.s3a.endpoint.region)"
    return None


def _endpoint(settings: StorageSettings, bucket: str) -> str:
    return settings.get("endpoint", bucket) or "the AWS default endpoint"


def _check_python_side(bucket: str, uri: str, settings: StorageSettings) -> None:
    import pyarrow.fs as pafs

    opts = settings.s3_options(bucket)
    # a quick answer: short timeouts and few retries for this one check (tasks keep the configured ones)
    opts.update(connect_timeout=min(opts.get("connect_timeout", 10), 10),
                request_timeout=min(opts.get("request_timeout", 30), 30),
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
    try:
        fs = pafs.S3FileSystem(**opts)
        key = split_bucket(uri)[1]
        fs.get_file_info(f"{bucket}/{key}" if key else bucket)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        raise StorageError(_explain(bucket, _endpoint(settings, bucket), text)
                           or f"s3a://{bucket}: the executors' reader (pyarrow) failed: {text}") from None


def _check_hadoop_side(spark, bucket: str, uri: str, settings: StorageSettings) -> None:
    try:
        fs, path = internals.hadoop_fs(spark, uri)
        fs.exists(path)
    except Exception as exc:
        text = str(exc)
        first = next((line for line in text.splitlines() if "Exception" in line), text[:300])
        raise StorageError(_explain(bucket, _endpoint(settings, bucket), text)
                           or f"s3a://{bucket}: Spark's S3A connector failed: {first.strip()[:400]}") from None
