"""Write one benchmark's section into BENCHMARKS.md, replacing that section's previous results only."""
from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

HEADER = "# voxlake benchmarks\n\nWritten by `make bench` (each section by its own script; see bench/).\n"


def cpu_model() -> str:
    """The processor's name (/proc/cpuinfo on Linux): the same bench on one "2-core x86_64" machine gave
    figures twice as far apart from one CPU model to another, so each section names the one it ran on."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import os

    import psutil

    return (f"{platform.machine()} ({cpu_model()}), {os.cpu_count()} cores, "
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
