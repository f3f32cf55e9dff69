"""voxlake's nightly pipeline as an Apache Airflow DAG: ingest → annotate → publish → maintain → report.

Each task runs one voxlake command in a shell, the same entry point a person runs by hand: the `voxlake`
CLI of an installed checkout (the default), or spark-submit on a cluster (set the `voxlake` param to e.g.
`spark-submit --master spark://head:7077 --packages io.delta:delta-spark_4.1_2.13:4.3.1,org.apache.hadoop:hadoop-aws:3.4.2 --py-files /srv/voxlake/dist/voxlake.zip /srv/voxlake/jobs/cli.py`).
The warehouse, sources, manifests and config file are DAG params, so one DAG serves any warehouse and a
manual trigger can point elsewhere. One run at a time (max_active_runs=1); a task that fails is retried.
A voxlake command that finds the warehouse held by another run exits 4 and is retried like any failure;
a publish blocked by the quality gate exits 1 and stops the run (gold stays unchanged).

Copy this file into Airflow's dags folder (or point `dags_folder` here).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

COMMON = "--config {{ params.config }} --warehouse {{ params.warehouse }}"
SOURCES = ("{% for s in params.sources %} --source {{ s }}{% endfor %}"
           "{% for m in params.manifests %} --manifest {{ m }}{% endfor %}")

with DAG(
    dag_id="voxlake_nightly",
    description="Raw speech audio → annotated, quality-checked Delta tables (voxlake)",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=20)},
    params={
        "voxlake": Param("/srv/voxlake/.venv/bin/voxlake", type="string",
                         description="the command that runs a voxlake subcommand (CLI or spark-submit ... jobs/cli.py)"),
        "workdir": Param("/srv/voxlake", type="string", description="working directory of every command"),
        "config": Param("/srv/voxlake/storage.yaml", type="string", description="voxlake config file"),
        "warehouse": Param("s3a://bucket/voxlake", type="string"),
        "sources": Param(["s3a://bucket/raw-audio"], type="array", description="folders / tables to ingest"),
        "manifests": Param([], type="array", description="JSON Lines manifests"),
        "max_hours": Param(500, type="number", description="audio hours annotated per night at most"),
    },
    tags=["voxlake", "speech"],
) as dag:
    def voxlake(task_id: str, args: str) -> BashOperator:
        return BashOperator(task_id=task_id, cwd="{{ params.workdir }}",
                            bash_command="{{ params.voxlake }} " + args)

    ingest = voxlake("ingest", f"ingest {COMMON}{SOURCES}")
    annotate = voxlake("annotate", f"annotate {COMMON} --max-hours {{{{ params.max_hours }}}}")
    publish = voxlake("publish", f"publish {COMMON}")
    maintain = voxlake("maintain", f"maintain {COMMON}")
    report = voxlake("report", f"report {COMMON}")
    ingest >> annotate >> publish >> maintain >> report
