"""Per-file "in progress" markers, so that a file which kills its worker costs one file, not a job.

Before a file is processed a marker is written (how many times it was started, and how many of those
alone); when its batch is done the marker goes. A worker that dies (a segfault in a native library, the
kernel's OOM killer, the hard time limit, an executor lost to preemption) leaves its files' markers
behind, Spark retries the task, and the retried task processes marked files one at a time. Only a death
with the file alone in progress counts against it: a file that died alone `annotate.max_worker_deaths`
times is not started again but recorded as WORKER_CRASHED (or TIMEOUT, when the time limit killed it),
so the innocent files of a batch that died are never branded. A given-up file keeps its marker until the
run ends, so every later attempt (of the task, or of the whole job: jobs.stages.annotate) gives it up
at once instead of starting it again.

Markers live in the run's staging folder under the warehouse, which every executor can reach: a local
warehouse is a folder, an object-store warehouse gets one small object per file in progress (written
whole by one PUT, so a reader never sees half a marker), through the same settings as every other read.
"""
from __future__ import annotations

import json
import os

from udfs.files import local_path
from udfs.storage import StorageSettings, filesystem


class Markers:
    def __init__(self, folder: str | None, storage: StorageSettings | None = None):
        self.folder = local_path(folder) if folder else None
        self._remote = None  # (pyarrow filesystem, folder inside it) for an object-store warehouse
        if self.folder:
            os.makedirs(self.folder, exist_ok=True)
        elif folder:
            self._remote = filesystem(folder.rstrip("/"), storage)

    def _path(self, audio_id: str) -> str:
        return os.path.join(self.folder, audio_id)

    def read(self, audio_id: str) -> dict | None:
        if self._remote:
            fs, base = self._remote
            try:
                with fs.open_input_stream(f"{base}/{audio_id}") as f:
                    return json.loads(f.read())
            except (FileNotFoundError, ValueError):
                return None
        if not self.folder:
            return None
        try:
            with open(self._path(audio_id)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def start(self, audio_id: str, alone: bool) -> dict:
        """Record one more start of this file (`alone`: with no other file in progress); returns the
        marker (starts, alone, reason)."""
        marker = self.read(audio_id) or {"starts": 0, "alone": 0, "reason": "crashed"}
        marker["starts"] += 1
        marker["alone"] = marker.get("alone", 0) + int(alone)
        self.write(audio_id, marker)
        return marker

    def write(self, audio_id: str, marker: dict) -> None:
        if self._remote:
            fs, base = self._remote
            with fs.open_output_stream(f"{base}/{audio_id}") as f:
                f.write(json.dumps(marker).encode())
            return
        if not self.folder:
            return
        tmp = self._path(audio_id) + f".{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(marker, f)
        os.replace(tmp, self._path(audio_id))

    def done(self, audio_id: str) -> None:
        if self._remote:
            fs, base = self._remote
            try:
                fs.delete_file(f"{base}/{audio_id}")
            except FileNotFoundError:
                pass
        elif self.folder:
            try:
                os.remove(self._path(audio_id))
            except FileNotFoundError:
                pass
