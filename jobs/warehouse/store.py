"""The warehouse: Delta tables in a folder (or object-store URI), registered in the session's catalog.

Each table lives at `<warehouse>/<database>/<table>`. The Delta folders are the source of truth, so the
warehouse needs no separate metastore service: a session that queries tables by name (`voxlake sql`,
report, export) registers the tables it finds there, which is what lets `voxlake ingest` and a later
`voxlake sql` see the same tables. With a persistent catalog (a Hive metastore on a cluster) every job
registers them there with the same `CREATE TABLE ... LOCATION` statements.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from jobs.spark import internals
from jobs.warehouse import faults
from schemas.tables import TableSpec

log = logging.getLogger(__name__)

ATTACHED_CONF = "voxlake.warehouse"


def normalize_root(root: str) -> str:
    """Absolute local path for plain paths; URIs (s3a://, hdfs://, file:/) are left as given."""
    if urlparse(root).scheme and len(urlparse(root).scheme) > 1:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


class Warehouse:
    def __init__(self, spark, root: str):
        self.spark = spark
        self.root = normalize_root(root)
        # set by the run's lease (jobs.warehouse.lease): raises when this run no longer holds the warehouse
        self.guard: Callable[[], None] | None = None
        self.faults = faults.FaultPlan.from_environment()  # empty unless a test sets it (a testing aid)

    @contextmanager
    def committing(self, point: str) -> Iterator[None]:
        """Wrap one commit (a Delta write or MERGE) named `point`: a run that lost the warehouse's lease
        stops before it (the guard raises), and the fault-injection hook may stop the process right after
        it (jobs.warehouse.faults, a testing aid)."""
        if self.guard is not None:
            self.guard()
        yield
        self.faults.after_commit(point)

    def path(self, spec: TableSpec) -> str:
        return f"{self.root}/{spec.database}/{spec.name}"

    def attach(self, specs=None) -> None:
        """Create missing tables, upgrade older ones, and register them where registering lasts.

        The stages address tables by path. Registering names (and the views) only outlives this command
        in a persistent catalog (a Hive metastore on a cluster); in Spark's default in-memory catalog it
        cost every command time and was gone when the command ended. `voxlake sql`, `report` and
        `export` register what they read (attach_existing).
        """
        from jobs.warehouse.catalog import tables

        specs = tables() if specs is None else specs
        register = self.catalog_persists()
        previous = self.spark.conf.get(ATTACHED_CONF, None)
        if register:
            for database in sorted({spec.database for spec in specs}):
                self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
        # Each table is its own Delta log, so they are created (or checked) side by side, which halves the
        # time a new warehouse takes. Registering in a persistent catalog stays one table at a time:
        # concurrent metastore calls are not tested here.
        workers = 1 if register else max(1, min(8, len(specs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voxlake-attach") as pool:
            for done in [pool.submit(self._attach_one, spec, register, previous) for spec in specs]:
                done.result()  # the first failure, if any, raised here
        if register:
            self.spark.conf.set(ATTACHED_CONF, self.root)
            self.create_views()

    def _attach_one(self, spec: TableSpec, register: bool, previous: str | None) -> None:
        from delta.tables import DeltaTable

        from jobs.warehouse.catalog import CONSTRAINTS

        location = self.path(spec)
        if register and previous and previous != self.root:
            self.spark.sql(f"DROP TABLE IF EXISTS {spec.qualified}")  # external: data stays
        if self.table_version(spec) is not None:
            if register:
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS {spec.qualified} USING DELTA LOCATION '{location}'")
            self._add_missing_columns(spec)
            return
        builder = DeltaTable.createIfNotExists(self.spark)
        if register:
            builder = builder.tableName(spec.qualified)
        builder = builder.addColumns(spec.schema).location(location)
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        # CHECK constraints are the table properties delta.constraints.<name>: set in the creating
        # commit they are enforced as after ALTER TABLE ADD CONSTRAINT, without a commit (and a
        # check query) each
        for name, check in CONSTRAINTS.get(spec, {}).items():
            builder = builder.property(f"delta.constraints.{name}", check)
        builder.execute()
        log.info("created table %s at %s", spec.qualified, location)

    def catalog_persists(self) -> bool:
        """True when table names registered in this session outlive it (Spark's Hive catalog)."""
        return self.spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "in-memory"

    def _add_missing_columns(self, spec: TableSpec) -> None:
        """Upgrade a table written by an older voxlake: add the columns and struct fields it lacks
        (new fields are always appended, so older rows read them as null)."""
        from pyspark.sql.types import StructType

        current = self.spark.read.format("delta").load(self.path(spec)).schema

        def missing(have: StructType, want: StructType, prefix: str):
            have_by = {f.name: f for f in have.fields}
            for f in want.fields:
                if f.name not in have_by:
                    yield f"{prefix}{f.name}", f.dataType
                elif isinstance(f.dataType, StructType) and isinstance(have_by[f.name].dataType, StructType):
                    yield from missing(have_by[f.name].dataType, f.dataType, f"{prefix}{f.name}.")

        for name, dtype in missing(current, spec.schema, ""):
            quoted = ".".join(f"`{part}`" for part in name.split("."))
            self.spark.sql(f"ALTER TABLE delta.`{self.path(spec)}` ADD COLUMNS ({quoted} {dtype.simpleString()})")
            log.info("upgraded %s: added column %s", spec.qualified, name)

    def create_views(self) -> None:
        """Day-one views (they live in the session catalog, so every session recreates them)."""
        from jobs.warehouse.views import VIEWS

        exists = {t: self.spark.catalog.tableExists(t) for t in ("gold.utterances", "ops.file_state")}
        for name, sql in VIEWS.items():
            # tableExists per table: listTables would load every table of the database
            if all(found for t, found in exists.items() if t in sql):
                self.spark.sql(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    def attach_existing(self) -> list[str]:
        """Register whatever Delta tables the warehouse holds (for `voxlake sql`); returns their names."""
        from delta.tables import DeltaTable

        found = []
        previous = self.spark.conf.get(ATTACHED_CONF, None)
        for db, table in self._list_table_dirs():
            location = f"{self.root}/{db}/{table}"
            if not DeltaTable.isDeltaTable(self.spark, location):
                continue
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
            if previous and previous != self.root:
                self.spark.sql(f"DROP TABLE IF EXISTS {db}.{table}")
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {db}.{table} USING DELTA LOCATION '{location}'")
            found.append(f"{db}.{table}")
        self.spark.conf.set(ATTACHED_CONF, self.root)
        self.create_views()
        return found

    def _list_table_dirs(self) -> list[tuple[str, str]]:
        fs, root = internals.hadoop_fs(self.spark, self.root)
        if not fs.exists(root):
            return []
        out = []
        for db_status in fs.listStatus(root):
            if not db_status.isDirectory():
                continue
            db = db_status.getPath().getName()
            for t_status in fs.listStatus(db_status.getPath()):
                if t_status.isDirectory():
                    out.append((db, t_status.getPath().getName()))
        return sorted(out)

    def _fs(self, path: str):
        return internals.hadoop_fs(self.spark, path)

    def write_text(self, path: str, text: str) -> None:
        fs, hpath = self._fs(path)
        out = fs.create(hpath, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def read_text(self, path: str) -> str:
        fs, hpath = self._fs(path)
        stream = fs.open(hpath)
        try:
            return internals.jvm(self.spark).org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def list_files(self, folder: str, dirs: bool = False) -> list[tuple[str, int]]:
        """(path, modification time in ms) of the files (or folders) directly in `folder`."""
        fs, hpath = self._fs(folder)
        if not fs.exists(hpath):
            return []
        return [(st.getPath().toString(), int(st.getModificationTime())) for st in fs.listStatus(hpath)
                if st.isDirectory() == dirs]

    def exists(self, path: str) -> bool:
        fs, hpath = self._fs(path)
        return bool(fs.exists(hpath))

    def remove(self, path: str) -> None:
        """Delete a file or folder (staging data) through Hadoop's filesystem, local or object store."""
        fs, hpath = self._fs(path)
        fs.delete(hpath, True)

    def staging(self, stage: str, run_id: str) -> str:
        """A run's scratch folder for staged results (removed when the stage is done)."""
        return f"{self.root}/_staging/{stage}/{run_id}"

    def table_version(self, spec: TableSpec) -> int | None:
        """The table's latest committed version, or None when it is not a Delta table.

        By the Delta protocol the latest version is the highest-numbered commit file in `_delta_log`
        (zero-padded to 20 digits): one directory listing, where asking Delta means a snapshot update and
        a history DataFrame per table; the ledger and the stages' records ask for several tables per run.
        """
        fs, log_dir = self._fs(f"{self.path(spec)}/_delta_log")
        if not fs.exists(log_dir):
            return None
        versions = [int(name[:20]) for name in (st.getPath().getName() for st in fs.listStatus(log_dir))
                    if len(name) == 25 and name.endswith(".json") and name[:20].isdigit()]
        return max(versions) if versions else None

    def is_empty_since_created(self, spec: TableSpec) -> bool:
        """True when the table's only commit is version 0, the one `attach` created it with (no rows).

        Writers use it to append into a table that has nothing to compare with, instead of planning a
        MERGE against it; a later commit of any kind (even one that added no rows) means the usual path.
        """
        return self.table_version(spec) == 0
