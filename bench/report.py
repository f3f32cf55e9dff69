"""Write one benchmark's section into BENCHMARKS.md, replacing that section's previous results only."""
from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

HEADER = "# voxlake benchmarks\n\nWritten by `make bench` (each section by its own script; see bench/).\n"


def machine() -> str:
    import os

    import psutil

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}")


def write_section(path: Path, key: str, body: str) -> None:
    text = path.read_text() if path.exists() else HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"<!-- {key}:start -->\n{body.rstrip()}\n\n_Measured {stamp} on {machine()}._\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def publish(path: Path, key: str, lines: list[str]) -> None:
    """Write a section made of lines to BENCHMARKS.md (or --out) and show it on the console."""
    body = "\n".join(lines) + "\n"
    write_section(path, key, body)
    print(body)
