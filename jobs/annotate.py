"""spark-submit entry point: `spark-submit jobs/annotate.py --warehouse ... [--config FILE]` (the CLI's flags)."""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.commandline.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli_main(["annotate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
