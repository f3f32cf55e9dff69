"""A real S3-compatible server on 127.0.0.1 for the object-storage tests: moto's standalone server.

It runs as its own process (`moto_server`) and is reached over HTTP, exactly as Spark's S3A connector and
pyarrow reach AWS. Authentication is switched on (`INITIAL_NO_AUTH_ACTION_COUNT`): the first three requests
create an IAM user with an access key, and every request after them must be signed with that key, so wrong
credentials are rejected as they are by a real store.

Run it by hand to try voxlake against object storage locally: `python tests/s3_server.py` prints the
settings to pass (docs/object-storage.md).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def spark_conf(self, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """The `spark.conf` entries a voxlake config needs for this server."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": REGION,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.access.key": access_key or self.access_key,
            "spark.hadoop.fs.s3a.secret.key": secret_key or self.secret_key,
        }

    def upload_tree(self, bucket: str, prefix: str, folder: Path, pattern: str = "*") -> list[str]:
        """Upload the files under `folder` matching `pattern`; returns their s3a:// URIs."""
        s3 = self.client()
        uris = []
        for path in sorted(folder.rglob(pattern)):
            if path.is_file():
                key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
                s3.upload_file(str(path), bucket, key)
                uris.append(f"s3a://{bucket}/{key}")
        return uris

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(buckets: tuple[str, ...] = (), log_path: Path | None = None) -> S3Server:
    """Start moto_server on a free local port, with authentication on and one user's key."""
    import boto3

    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not exe:
        raise RuntimeError("moto_server not found: install the dev extras (`make setup`)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on port {port}") from None
            time.sleep(0.2)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="voxlake")
    iam.put_user_policy(UserName="voxlake", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="voxlake")["AccessKey"]
    server = S3Server(proc, endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    for bucket in buckets:
        server.client().create_bucket(Bucket=bucket)
    return server


if __name__ == "__main__":
    srv = start(buckets=tuple(sys.argv[1:]) or ("voxlake",))
    print(f"S3-compatible server (moto) at {srv.endpoint}; buckets: {', '.join(sys.argv[1:]) or 'voxlake'}")
    print("voxlake config (spark: conf:):")
    for k, v in srv.spark_conf().items():
        print(f"    {k}: \"{v}\"")
    print(f"AWS_ACCESS_KEY_ID={srv.access_key} AWS_SECRET_ACCESS_KEY={srv.secret_key} (for the aws CLI / boto3)")
    print("Ctrl-C stops it.")
    try:
        srv.process.wait()
    except KeyboardInterrupt:
        srv.stop()
