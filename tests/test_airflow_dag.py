"""The shipped Airflow DAG, loaded by Airflow's own DagBag (from the Airflow venv of `make setup-airflow`)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess

import jinja2
import pytest
from conftest import REPO

from jobs.commandline.cli import build_parser

pytestmark = pytest.mark.slow  # Airflow in its own venv

AIRFLOW_PY = REPO / ".deps" / "airflow-venv" / "bin" / "python"


def test_dag_loads_in_order_with_retries_and_runs_voxlake_commands(tmp_path):
    if not AIRFLOW_PY.exists():
        pytest.fail("Airflow is missing: run `make setup-airflow` (make test does)")
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "deploy" / "airflow"))
    proc = subprocess.run([str(AIRFLOW_PY), str(REPO / "tests" / "airflow_dagbag.py"), str(REPO / "deploy" / "airflow")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bag = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    dag = bag["dags"]["voxlake_nightly"]
    tasks = dag["tasks"]
    order = ["ingest", "annotate", "publish", "maintain", "report"]
    assert set(tasks) == set(order)
    for before, after in zip(order, order[1:], strict=False):
        assert tasks[after]["upstream"] == [before]
    assert dag["max_active_runs"] == 1 and all(t["retries"] >= 1 for t in tasks.values())

    # each command, rendered with the DAG's params (two sources and a manifest), is a valid voxlake call
    params = {**dag["params"], "sources": ["s3a://b/raw", "/data/more"], "manifests": ["s3a://b/m.jsonl"]}
    for name in order:
        argv = shlex.split(jinja2.Template(tasks[name]["bash"]).render(params=params))
        assert argv[0] == params["voxlake"]
        args = build_parser().parse_args(argv[1:])
        assert args.command == name and args.warehouse == params["warehouse"] and args.config == params["config"]
        if name == "ingest":
            assert args.source == ["s3a://b/raw", "/data/more"] and args.manifest == ["s3a://b/m.jsonl"]
        if name == "annotate":
            assert args.max_hours == params["max_hours"]
