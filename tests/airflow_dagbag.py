"""Run by the Airflow venv's Python (tests/test_airflow_dag.py): load a dags folder with Airflow's DagBag
and print, as JSON, the import errors and each DAG's tasks, order, commands and params."""
import json
import sys

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for t in dag.tasks:
        tasks[t.task_id] = {"upstream": sorted(t.upstream_task_ids), "bash": getattr(t, "bash_command", None),
                            "retries": t.retries}
    out["dags"][dag_id] = {"tasks": tasks, "max_active_runs": dag.max_active_runs,
                           "params": {k: dag.params[k] for k in dag.params}}
print(json.dumps(out, default=str))
