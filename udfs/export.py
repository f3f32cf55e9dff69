"""Executor side of `voxlake export`: each task writes whole shards of one training format.

Rows arrive sorted by (shard, audio_id), so a shard's content depends only on which rows it holds: the
same gold version and predicate give the same files, byte for byte (no timestamps inside them: tar
members carry the gold commit's time, lhotse manifests are written uncompressed). The formats:

- nemo: JSON Lines manifests (`audio_filepath`, `duration`, `text`, `lang`; one line per segment with
  `offset` when segments are asked for);
- lhotse: RecordingSet and SupervisionSet manifests written by lhotse itself (one supervision per gold
  segment, with word alignments; one per recording when it has no segments);
- hf: Parquet with an `audio` {bytes, path} column and the `huggingface` schema metadata that makes
  `datasets` read it as its Audio feature (bytes embedded or left null: `embed_audio`);
- webdataset: tar shards of `<audio_id>.<ext>` (the file's bytes) and `<audio_id>.json` (the metadata).

The unit is a clip (gold.clips, the default), a file (gold.utterances) or a segment (gold.segments, nemo
and lhotse). Clips: nemo lines with `offset` and `duration`; lhotse recordings with one supervision per
clip and its word alignment; hf and webdataset carry the clip's own audio, cut out of the file at its
native rate and encoded as FLAC (each file decoded once per shard: rows arrive sorted by audio id).

A file's text is the reference transcript when the manifest gave one, else Whisper's transcript; a clip's
is the words inside it (the reference transcript for a clip that is the whole file).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from udfs.files import local_path, open_stream
from udfs.storage import StorageSettings, filesystem

FORMATS = ("nemo", "lhotse", "hf", "webdataset")
META_COLUMNS = ["audio_id", "language", "duration_s", "sample_rate", "channels", "transcript", "reference_text",
                "speaker", "snr_db", "dnsmos_ovrl", "quality_band", "speech_ratio", "wer", "lufs"]
CLIP_META_COLUMNS = ["clip_id", "audio_id", "start_s", "end_s", "duration_s", "language", "language_prob",
                     "speaker", "speaker_label", "speaker_cluster_id", "speaker_purity", "snr_db", "dnsmos_ovrl",
                     "distillmos", "speech_ratio", "music_ratio", "mean_word_prob", "words_per_s"]
RESULT_SCHEMA = "shard int, file string, rows long, seconds double"
UNITS = ("clips", "files", "segments")


@dataclass(frozen=True)
class ExportSpec:
    format: str
    out: str  # folder (local path or URI)
    embed_audio: bool = False  # hf: the audio bytes inside the Parquet files
    unit: str = "clips"  # clips | files | segments
    mtime: float = 0.0  # webdataset: tar members' time (the gold commit's), not the clock's
    storage: StorageSettings | None = None


def _value(v):
    """numpy/pandas scalars → plain Python (JSON-able); NaN/NA → None."""
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _audio_path(uri: str) -> str:
    return local_path(uri) or uri


def _text(row: dict) -> str:
    return row.get("reference_text") or row.get("transcript") or ""


def _meta(row: dict) -> dict:
    return {c: _value(row.get(c)) for c in META_COLUMNS} | {"text": _text(row), "audio_filepath": _audio_path(row["uri"])}


def _read_bytes(uri: str, storage) -> bytes:
    with open_stream(uri, storage) as f:
        return f.read()


class _Output:
    """A shard file: written in a local temporary folder, then moved (or uploaded) to the export folder."""

    def __init__(self, spec: ExportSpec, name: str):
        self.spec, self.name = spec, name
        self.tmpdir = tempfile.mkdtemp(prefix="voxlake-export-")
        self.path = os.path.join(self.tmpdir, os.path.basename(name))

    def publish(self) -> str:
        target = f"{self.spec.out.rstrip('/')}/{self.name}"
        local = local_path(target)
        try:
            if local is not None:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                shutil.move(self.path, local)
            else:
                fs, remote = filesystem(target, self.spec.storage)
                with open(self.path, "rb") as src, fs.open_output_stream(remote) as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return target


def _write_nemo(spec: ExportSpec, shard: int, rows: list[dict]) -> str:
    out = _Output(spec, f"manifest_{shard:05d}.json")
    with open(out.path, "w", encoding="utf-8") as f:
        for row in rows:
            base = {"audio_filepath": _audio_path(row["uri"]), "lang": row["language"], "audio_id": row["audio_id"]}
            segments = row.get("segments")
            if spec.unit == "clips":
                f.write(json.dumps({**base, "clip_id": row["clip_id"], "offset": round(float(row["start_s"]), 3),
                                    "duration": round(float(row["duration_s"]), 3), "text": _clip_text(row)},
                                   ensure_ascii=False) + "\n")
            elif spec.unit == "segments" and segments is not None and len(segments):
                for seg in segments:
                    start, end = float(seg["start_s"]), float(seg["end_s"])
                    f.write(json.dumps({**base, "offset": round(start, 3), "duration": round(end - start, 3),
                                        "text": (seg["text"] or "").strip()}, ensure_ascii=False) + "\n")
            else:
                f.write(json.dumps({**base, "duration": round(float(row["duration_s"]), 3), "text": _text(row)},
                                   ensure_ascii=False) + "\n")
    return out.publish()


def _clip_text(row: dict) -> str:
    """A clip's text: the words inside it, or the reference transcript of a clip that is the whole file."""
    if row.get("whole_file") and row.get("reference_text"):
        return row["reference_text"]
    return row.get("text") or ""


def _recording(row: dict):
    """The lhotse Recording of a row's file (`file_duration_s`: the file's, for a clip row)."""
    from lhotse import AudioSource, Recording

    rate = int(row["sample_rate"])
    channels = int(row.get("channels") or 1)
    num_samples = int(round(float(row.get("file_duration_s") or row["duration_s"]) * rate))
    return Recording(id=row["audio_id"], sources=[AudioSource(type="file", channels=list(range(channels)),
                                                              source=_audio_path(row["uri"]))],
                     sampling_rate=rate, num_samples=num_samples, duration=num_samples / rate)


def _lhotse_clips(rows: list[dict]) -> tuple[list, list]:
    """One recording per file, one supervision per clip with its words (times relative to the clip)."""
    from lhotse import SupervisionSegment
    from lhotse.supervision import AlignmentItem

    recordings, supervisions = {}, []
    for row in rows:
        rec = recordings.get(row["audio_id"]) or recordings.setdefault(row["audio_id"], _recording(row))
        start = max(0.0, float(row["start_s"]))
        duration = min(rec.duration - start, float(row["duration_s"]))
        words = [AlignmentItem(symbol=(w["word"] or "").strip(), start=round(start + float(w["start_s"]), 3),
                               duration=round(max(0.0, float(w["end_s"]) - float(w["start_s"])), 3))
                 for w in (row.get("words") if row.get("words") is not None else [])]
        supervisions.append(SupervisionSegment(
            id=row["clip_id"], recording_id=row["audio_id"], start=round(start, 3), duration=round(duration, 3),
            channel=0, text=_clip_text(row), language=row["language"], speaker=_value(row.get("speaker")),
            custom={k: _value(row.get(k)) for k in ("snr_db", "dnsmos_ovrl", "speaker_label", "speaker_purity")},
            alignment={"word": words} if words else None))
    return list(recordings.values()), supervisions


def _write_lhotse(spec: ExportSpec, shard: int, rows: list[dict]) -> list[str]:
    from lhotse import RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.supervision import AlignmentItem

    recordings, supervisions = [], []
    if spec.unit == "clips":
        recordings, supervisions = _lhotse_clips(rows)
    for row in rows if spec.unit != "clips" else []:
        recordings.append(_recording(row))
        duration = recordings[-1].duration
        segments = row.get("segments")
        custom = {k: _value(row.get(k)) for k in ("snr_db", "dnsmos_ovrl", "quality_band")}
        if segments is not None and len(segments):
            for seg in segments:
                start = max(0.0, float(seg["start_s"]))
                end = min(duration, float(seg["end_s"]))
                words = [AlignmentItem(symbol=(w["word"] or "").strip(), start=float(w["start_s"]),
                                       duration=max(0.0, float(w["end_s"]) - float(w["start_s"])))
                         for w in (seg.get("words") if seg.get("words") is not None else [])]
                supervisions.append(SupervisionSegment(
                    id=f"{row['audio_id']}-{int(seg['segment_id']):04d}", recording_id=row["audio_id"],
                    start=round(start, 3), duration=round(max(0.0, end - start), 3), channel=0,
                    text=(seg["text"] or "").strip(), language=row["language"], speaker=_value(row.get("speaker")),
                    custom=custom, alignment={"word": words} if words else None))
        else:
            supervisions.append(SupervisionSegment(
                id=row["audio_id"], recording_id=row["audio_id"], start=0.0, duration=duration, channel=0,
                text=_text(row), language=row["language"], speaker=_value(row.get("speaker")), custom=custom))
    rec = _Output(spec, f"recordings_{shard:05d}.jsonl")
    sup = _Output(spec, f"supervisions_{shard:05d}.jsonl")
    RecordingSet.from_recordings(recordings).to_file(rec.path)
    SupervisionSet.from_segments(supervisions).to_file(sup.path)
    return [rec.publish(), sup.publish()]


class _ClipAudio:
    """FLAC bytes of clips, cut from their file at its native rate; one file decoded at a time."""

    def __init__(self, storage):
        self.storage, self.audio_id, self.native, self.rate = storage, None, None, None

    def flac(self, row: dict) -> bytes:
        import io

        import soundfile as sf

        from annotators.decode import decode

        if row["audio_id"] != self.audio_id:
            with open_stream(row["uri"], self.storage) as f:
                d = decode(io.BytesIO(f.read()))
            self.audio_id, self.native, self.rate = row["audio_id"], d.native, d.native_rate
        piece = self.native[int(float(row["start_s"]) * self.rate): int(float(row["end_s"]) * self.rate)]
        out = io.BytesIO()
        sf.write(out, piece, self.rate, format="FLAC")
        return out.getvalue()


def _clip_meta(row: dict) -> dict:
    return {c: _value(row.get(c)) for c in CLIP_META_COLUMNS} | {"text": _clip_text(row),
                                                                 "audio_filepath": _audio_path(row["uri"])}


def _hf_clip_features() -> dict:
    value = {"_type": "Value"}
    kinds = {c: "string" for c in ("clip_id", "audio_id", "language", "speaker", "speaker_cluster_id", "text")}
    kinds |= {c: "float64" for c in CLIP_META_COLUMNS if c not in kinds and c != "speaker_label"}
    kinds["speaker_label"] = "int64"
    return {"audio": {"_type": "Audio"}, **{k: {**value, "dtype": kinds[k]} for k in [*CLIP_META_COLUMNS, "text"]}}


def _hf_features() -> dict:
    value = {"_type": "Value"}
    kinds = {"audio_id": "string", "language": "string", "duration_s": "float64", "sample_rate": "int64",
             "channels": "int64", "transcript": "string", "reference_text": "string", "speaker": "string",
             "snr_db": "float64", "dnsmos_ovrl": "float64", "quality_band": "string", "speech_ratio": "float64",
             "wer": "float64", "lufs": "float64", "text": "string"}
    return {"audio": {"_type": "Audio"}, **{k: {**value, "dtype": v} for k, v in kinds.items()}}


def _write_hf(spec: ExportSpec, shard: int, rows: list[dict]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))]
    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64()}
    clips = spec.unit == "clips"
    features = _hf_clip_features() if clips else _hf_features()
    for name, feat in features.items():
        if name != "audio":
            fields.append(pa.field(name, types[feat["dtype"]]))
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    schema = pa.schema(fields, metadata=metadata)
    records, cutter = [], _ClipAudio(spec.storage)
    for row in rows:
        meta = _clip_meta(row) if clips else _meta(row)
        if clips:  # the clip's own audio (a path would name the whole file)
            audio = {"bytes": cutter.flac(row), "path": f"{row['clip_id']}.flac"}
        else:
            audio = {"bytes": _read_bytes(row["uri"], spec.storage) if spec.embed_audio else None,
                     "path": meta["audio_filepath"]}
        records.append({"audio": audio, **{k: meta.get(k) for k in features if k != "audio"}})
    out = _Output(spec, f"data/train-{shard:05d}.parquet")
    pq.write_table(pa.Table.from_pylist(records, schema=schema), out.path)
    return out.publish()


def _write_webdataset(spec: ExportSpec, shard: int, rows: list[dict]) -> str:
    import webdataset as wds

    out = _Output(spec, f"shard-{shard:06d}.tar")
    with open(out.path, "wb") as f:
        writer = wds.TarWriter(f, mtime=spec.mtime)
        cutter = _ClipAudio(spec.storage)
        for row in rows if spec.unit == "clips" else []:
            meta = _clip_meta(row)
            writer.write({"__key__": row["clip_id"], "flac": cutter.flac(row),
                          "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")})
        for row in rows if spec.unit != "clips" else []:
            ext = os.path.splitext(row["uri"].split("#", 1)[0])[1].lstrip(".").lower() or "audio"
            meta = _meta(row)
            writer.write({"__key__": row["audio_id"], ext: _read_bytes(row["uri"], spec.storage),
                          "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")})
        writer.close()
    return out.publish()


def make_export_fn(spec: ExportSpec):
    """The mapInPandas function: rows of whole shards in → one (shard, file, rows, seconds) per file out."""

    def write(shard: int, rows: list[dict]) -> list[tuple]:
        seconds = sum(float(r["duration_s"]) for r in rows)
        if spec.format == "nemo":
            files = [_write_nemo(spec, shard, rows)]
        elif spec.format == "lhotse":
            files = _write_lhotse(spec, shard, rows)
        elif spec.format == "hf":
            files = [_write_hf(spec, shard, rows)]
        else:
            files = [_write_webdataset(spec, shard, rows)]
        return [(shard, f, len(rows), seconds) for f in files]

    def export_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        current, rows = None, []
        for batch in batches:
            for rec in batch.to_dict("records"):
                shard = int(rec.pop("_shard"))
                if current is not None and shard != current:
                    yield pd.DataFrame(write(current, rows), columns=["shard", "file", "rows", "seconds"])
                    rows = []
                current = shard
                rows.append(rec)
        if current is not None:
            yield pd.DataFrame(write(current, rows), columns=["shard", "file", "rows", "seconds"])

    return export_batches

