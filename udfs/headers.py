"""Header probing and content hashing of one audio file, streamed.

Used by the ingest stage (inside Spark executors) but free of Spark: it takes a readable, seekable binary
file object and never holds the whole file in memory. It reads the header (soundfile for the formats
libsndfile knows, PyAV/FFmpeg for the rest) and checks the tail is really there, so a file cut short is
caught at ingest rather than hours later in an annotator.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import asdict, dataclass
from typing import BinaryIO

from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1 << 20
TAIL_CHECK_S = 0.05  # read this much audio at the header's end to prove the data is there

_SF_BIT_DEPTH = {
    "PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32,
    "FLOAT": 32, "DOUBLE": 64, "ULAW": 8, "ALAW": 8,
}


_LOSSY_SF_FORMATS = {"MP3", "MPEG", "OGG"}


@dataclass
class Probe:
    """What the header says about a file. Fields are None where unknown; error_code set when unusable."""

    container: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bit_depth: int | None = None
    duration_s: float | None = None
    error_code: str | None = None
    error_message: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def sha256_stream(f: BinaryIO) -> str:
    """sha256 of everything readable from the current position, in bounded memory."""
    digest = hashlib.sha256()
    while chunk := f.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def probe_stream(f: BinaryIO, size_bytes: int) -> Probe:
    """Probe an open, seekable file. Never raises for bad audio: the problem becomes error_code."""
    if size_bytes == 0:
        return Probe(error_code=ErrorCode.EMPTY.value, error_message="file is 0 bytes")
    f.seek(0)
    probe, sf_error = _probe_soundfile(f)
    if probe is not None:
        return probe
    f.seek(0)
    probe, av_error = _probe_av(f)
    if probe is not None:
        return probe
    return Probe(
        error_code=ErrorCode.UNKNOWN_FORMAT.value,
        error_message=f"not a recognised audio format (soundfile: {sf_error}; ffmpeg: {av_error})",
    )


def _probe_soundfile(f: BinaryIO) -> tuple[Probe | None, str | None]:
    import soundfile as sf

    try:
        with sf.SoundFile(f) as snd:
            frames, sr, channels = snd.frames, snd.samplerate, snd.channels
            probe = Probe(
                container=snd.format.lower(),
                codec=snd.subtype.lower(),
                sample_rate=sr,
                channels=channels,
                bit_depth=_SF_BIT_DEPTH.get(snd.subtype),
                duration_s=frames / sr if sr else None,
            )
            if frames <= 0:
                probe.error_code = ErrorCode.EMPTY.value
                probe.error_message = "the header declares no audio frames"
                return probe, None
            _check_header_consistency(snd, probe)
            if probe.error_code is None:
                _check_tail(snd, probe)
            return probe, None
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError for unknown data
        return None, _short(exc)


def _check_header_consistency(snd, probe: Probe) -> None:
    """libsndfile clamps a WAV whose data chunk is larger than the file; its log tells us it did."""
    info = snd.extra_info or ""
    if "exceeds file length" in info or ("should be" in info and "data" in info.lower()):
        probe.error_code = ErrorCode.TRUNCATED.value
        probe.error_message = "the header declares more audio data than the file holds"


def _check_tail(snd, probe: Probe) -> None:
    """Seek near the declared end and read: a file cut short fails here (FLAC, Ogg, WAV)."""
    want = max(1, min(snd.frames, int(TAIL_CHECK_S * snd.samplerate)))
    try:
        snd.seek(snd.frames - want)
        got = len(snd.read(want, dtype="float32", always_2d=True))
    except Exception as exc:
        probe.error_code = ErrorCode.TRUNCATED.value
        probe.error_message = f"cannot read the last {want} frames the header declares: {_short(exc)}"
        return
    # Lossy formats (MP3, Vorbis) declare an estimated frame count (encoder delay and padding), so a
    # few missing frames there are normal; an exact format (PCM, FLAC) must deliver every frame.
    exact = snd.format not in _LOSSY_SF_FORMATS
    if got == 0 or (exact and got < want):
        probe.error_code = ErrorCode.TRUNCATED.value
        probe.error_message = f"read {got} of the last {want} frames the header declares"


def _probe_av(f: BinaryIO) -> tuple[Probe | None, str | None]:
    import av

    try:
        container = av.open(f, mode="r", metadata_errors="ignore")
    except Exception as exc:
        return None, _short(exc)
    try:
        fmt = container.format.name.split(",")[0] if container.format else None
        streams = container.streams.audio
        if not streams:
            kinds = sorted({s.type for s in container.streams})
            return Probe(
                container=fmt,
                error_code=ErrorCode.NO_AUDIO_STREAM.value,
                error_message=f"container '{fmt}' holds no audio stream (streams: {kinds or 'none'})",
            ), None
        stream = streams[0]
        ctx = stream.codec_context
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # av.time_base
        bits = getattr(ctx.format, "bits", None) if ctx.format is not None else None
        probe = Probe(
            container=fmt,
            codec=ctx.name,
            sample_rate=ctx.sample_rate or None,
            channels=ctx.channels or None,
            bit_depth=bits if ctx.name.startswith("pcm_") else None,
            duration_s=duration,
        )
        if not _av_has_a_frame(container, stream):
            probe.error_code = ErrorCode.DECODE_FAILED.value
            probe.error_message = f"{ctx.name} stream decodes to no audio"
        return probe, None
    except Exception as exc:
        return None, _short(exc)
    finally:
        container.close()


def _av_has_a_frame(container, stream) -> bool:
    """Decode up to a few packets: a text file that FFmpeg guesses is MP3 yields no frame."""
    try:
        for i, frame in enumerate(container.decode(stream)):
            if frame.samples > 0:
                return True
            if i > 16:
                break
    except Exception:
        return False
    return False


def probe_bytes(data: bytes) -> Probe:
    return probe_stream(io.BytesIO(data), len(data))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
