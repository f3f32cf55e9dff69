"""spark-submit entry point for any voxlake command: `spark-submit jobs/cli.py <command> ...` (the CLI's
arguments; deploy/airflow's DAG runs it this way on a cluster)."""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.commandline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
