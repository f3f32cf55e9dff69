"""A real Spark standalone cluster on this machine (master + one worker from the pyspark package), and
`spark-submit` of voxlake's jobs to it, for benches and tests that need the driver apart from the
executors (in local mode one JVM is both).

The pyspark package has `sbin/spark-daemon.sh` but no start-master/start-worker scripts: the daemons are
started by class name, and stopped through the pid files the script writes.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parent.parent
SPARK_HOME = Path(pyspark.__file__).parent
PACKAGES = ("jobs", "annotators", "udfs", "schemas", "expectations")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    """`with StandaloneCluster(root) as cluster:` a master and one worker until the block ends."""

    def __init__(self, root: Path, cores: int = 2, memory: str = "4g", worker_opts: str = ""):
        self.root, self.cores, self.memory = Path(root), cores, memory
        self.env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOG_DIR": str(self.root / "logs"),
                    "SPARK_PID_DIR": str(self.root / "pids"), "SPARK_WORKER_DIR": str(self.root / "work"),
                    "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
        if worker_opts:
            self.env["SPARK_WORKER_OPTS"] = worker_opts
        self.master = ""
        self.py_files = self.root / "voxlake.zip"

    def _daemon(self, *args: str) -> None:
        subprocess.run([str(SPARK_HOME / "sbin" / "spark-daemon.sh"), *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def __enter__(self) -> StandaloneCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.master = f"spark://127.0.0.1:{port}"
        self._daemon("start", "org.apache.spark.deploy.master.Master", "1", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(free_port()))
        try:
            self._daemon("start", "org.apache.spark.deploy.worker.Worker", "1", "--cores", str(self.cores),
                         "--memory", self.memory, "--webui-port", str(free_port()), self.master)
            self._wait_for_worker()
            with zipfile.ZipFile(self.py_files, "w") as z:  # the code, as `make dist` packs it
                for pkg in PACKAGES:
                    for p in sorted((REPO / pkg).rglob("*")):
                        if p.is_file() and "__pycache__" not in p.parts:
                            z.write(p, p.relative_to(REPO))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_worker(self, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            logs = "".join(p.read_text(errors="replace") for p in (self.root / "logs").glob("*Worker*.out"))
            if "Successfully registered with master" in logs:
                return
            time.sleep(1)
        raise RuntimeError(f"the standalone worker did not register with {self.master} within {timeout_s:.0f} s "
                           f"(logs in {self.root / 'logs'})")

    def __exit__(self, *exc) -> None:
        for cls in ("org.apache.spark.deploy.worker.Worker", "org.apache.spark.deploy.master.Master"):
            subprocess.run([str(SPARK_HOME / "sbin" / "spark-daemon.sh"), "stop", cls, "1"], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def submit_command(self, job: str, *args: str, conf: dict | None = None) -> list[str]:
        """The spark-submit command line of `jobs/<job>.py ARGS` on this cluster (Delta from the local jars)."""
        from jobs.spark.jars import DELTA_JARS_DIR

        jars = ",".join(str(p) for p in sorted(DELTA_JARS_DIR.glob("*.jar")))
        cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.master, "--jars", jars,
               "--py-files", str(self.py_files)]
        for key, value in {"spark.pyspark.python": sys.executable, **(conf or {})}.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, str(REPO / "jobs" / f"{job}.py"), *args]
