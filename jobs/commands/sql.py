"""`voxlake sql`: SQL over the warehouse's tables, results on stdout as a table, JSON Lines or CSV."""
from __future__ import annotations

import csv
import json
import logging
import sys

log = logging.getLogger(__name__)


class SqlError(ValueError):
    """The query does not parse or refers to something that is not there (a usage error: exit 2)."""


def _jsonable(value):
    if hasattr(value, "asDict"):
        return {k: _jsonable(v) for k, v in value.asDict(recursive=False).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def run_sql(spark, warehouse, query: str, fmt: str, limit: int, out=None) -> None:
    from pyspark.errors import AnalysisException, ParseException

    out = out or sys.stdout
    tables = warehouse.attach_existing()
    log.info("warehouse %s: %s", warehouse.root, ", ".join(tables) or "no tables yet")
    try:
        df = spark.sql(query)
        rows = df.collect() if fmt != "table" else df.limit(limit + 1).collect()
    except (AnalysisException, ParseException) as exc:
        raise SqlError(str(exc).splitlines()[0]) from None
    columns = df.columns
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(_jsonable(row.asDict(recursive=False)), ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [json.dumps(_jsonable(v), ensure_ascii=False) if isinstance(v, (list, dict)) or hasattr(v, "asDict")
                 else _jsonable(v) for v in row]
            )
    else:
        _print_table(columns, rows[:limit], out)
        if len(rows) > limit:
            out.write(f"(showing the first {limit} rows; use --limit N)\n")


def _print_table(columns, rows, out) -> None:
    cells = [[("NULL" if v is None else str(_jsonable(v)))[:80] for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out.write(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
    out.write(line + "\n")
    for r in cells:
        out.write(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
