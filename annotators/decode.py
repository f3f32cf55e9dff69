"""Decode once: bytes or a file object → float32 audio at its native rate and a 16 kHz mono view.

soundfile (libsndfile) reads WAV (PCM/float/µ-law), FLAC, Ogg Vorbis/Opus and MP3 quickly; PyAV
(FFmpeg) reads the rest (M4A/AAC, MP4 audio tracks, WebM, ...). Problems are reported as error codes
(`DecodeError.code`), never as stray exceptions: empty audio, NaN/inf samples, a decode that stops well
short of the header's duration (truncation), and files over the duration limit, which are refused from
the header before any decoding so memory stays bounded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

TARGET_RATE = 16000


class DecodeError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Decoded:
    native: np.ndarray  # (frames, channels) float32
    native_rate: int
    samples: np.ndarray  # 16 kHz mono float32
    header_duration_s: float | None
    decoder: str

    @property
    def channels(self) -> int:
        return self.native.shape[1]

    @property
    def duration_s(self) -> float:
        return len(self.native) / self.native_rate


@dataclass(frozen=True)
class DecodeLimits:
    max_duration_s: float = 3600.0
    truncation_tolerance: float = 0.05  # decoded may fall short of the header by this fraction (+0.1 s)


def decode(f: BinaryIO, limits: DecodeLimits = DecodeLimits()) -> Decoded:
    f.seek(0, 2)
    if f.tell() == 0:
        raise DecodeError(ErrorCode.EMPTY, "file is 0 bytes")
    f.seek(0)
    try:
        native, rate, header_s = _decode_soundfile(f, limits)
        decoder = "soundfile"
    except _NotMine as sf_exc:
        f.seek(0)
        native, rate, header_s = _decode_av(f, limits, str(sf_exc))
        decoder = "pyav"
    if native.size == 0 or len(native) == 0:
        raise DecodeError(ErrorCode.EMPTY, "decoded to 0 samples")
    if not np.isfinite(native).all():
        bad = int((~np.isfinite(native)).sum())
        raise DecodeError(ErrorCode.NON_FINITE, f"{bad} of {native.size} samples are NaN or infinite")
    decoded_s = len(native) / rate
    if header_s and decoded_s < header_s * (1 - limits.truncation_tolerance) - 0.1:
        raise DecodeError(
            ErrorCode.TRUNCATED, f"decoded {decoded_s:.3f} s of the {header_s:.3f} s the header declares"
        )
    return Decoded(native, rate, to_16k_mono(native, rate), header_s, decoder)


def to_16k_mono(native: np.ndarray, rate: int) -> np.ndarray:
    """Average the channels, then resample with FFmpeg's swresample, streamed in 10 s chunks.

    This is the resampler faster-whisper's own `decode_audio` uses (and averaging is what its s16
    downmix does), so the 16 kHz view matches bare faster-whisper to within int16 rounding and
    transcripts do not drift from what users of faster-whisper get for the same file.
    """
    import av

    mono = native.mean(axis=1, dtype=np.float32) if native.shape[1] > 1 else native[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate == TARGET_RATE:
        return mono
    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
    out = []
    step = rate * 10
    for start in range(0, len(mono), step):
        frame = av.AudioFrame.from_ndarray(mono[None, start: start + step], format="flt", layout="mono")
        frame.sample_rate = rate
        out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


class _NotMine(Exception):
    """soundfile does not read this format: let PyAV try."""


def _check_length(seconds: float | None, limits: DecodeLimits) -> None:
    if seconds is not None and seconds > limits.max_duration_s:
        raise DecodeError(
            ErrorCode.TOO_LONG, f"{seconds:.1f} s is over the limit of {limits.max_duration_s:.0f} s"
        )


def _decode_soundfile(f: BinaryIO, limits: DecodeLimits):
    import soundfile as sf

    try:
        snd = sf.SoundFile(f)
    except Exception as exc:
        raise _NotMine(f"{type(exc).__name__}: {exc}") from None
    with snd:
        rate = snd.samplerate
        header_s = snd.frames / rate if rate and snd.frames > 0 else None
        _check_length(header_s, limits)
        blocks, total = [], 0
        # with a frame count in the header (checked against the limit above), read straight into one
        # array: no second copy of a long file when the blocks are joined
        into = np.empty((snd.frames, snd.channels), np.float32) if header_s else None
        try:
            # read in 1 s blocks: a wrong header cannot make us allocate more than max_duration_s, and
            # a file cut short still yields what precedes the cut (so it is TRUNCATED, not unreadable)
            block = max(rate, 1)
            while True:
                if into is not None:
                    data = snd.read(out=into[total: total + block]) if total < len(into) else into[:0]
                else:
                    data = snd.read(block, dtype="float32", always_2d=True)
                if len(data) == 0:
                    break
                if into is None:
                    blocks.append(data)
                total += len(data)
                _check_length(total / rate, limits)
        except DecodeError:
            raise
        except Exception as exc:
            decoded_s = total / rate if rate else 0.0
            if header_s and total:
                raise DecodeError(
                    ErrorCode.TRUNCATED,
                    f"decoding stopped after {decoded_s:.3f} of {header_s:.3f} s: {type(exc).__name__}: {exc}",
                ) from None
            raise DecodeError(ErrorCode.DECODE_FAILED, f"{type(exc).__name__}: {exc}") from None
    if into is not None:
        native = into[:total]
    else:
        native = np.concatenate(blocks) if blocks else np.zeros((0, snd.channels), np.float32)
    return native, rate, header_s


def _decode_av(f: BinaryIO, limits: DecodeLimits, sf_error: str):
    import av

    try:
        container = av.open(f, mode="r", metadata_errors="ignore")
    except Exception as exc:
        raise DecodeError(
            ErrorCode.UNKNOWN_FORMAT, f"not a recognised audio format (soundfile: {sf_error}; ffmpeg: {exc})"
        ) from None
    with container:
        if not container.streams.audio:
            raise DecodeError(ErrorCode.NO_AUDIO_STREAM, "the container holds no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        header_s = None
        if stream.duration is not None and stream.time_base is not None:
            header_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            header_s = container.duration / 1_000_000
        _check_length(header_s, limits)
        chunks, total = [], 0
        try:
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                arr = _planar_to_frames(arr, frame)
                chunks.append(arr)
                total += len(arr)
                rate = frame.sample_rate or rate
                _check_length(total / rate, limits)
        except DecodeError:
            raise
        except Exception as exc:
            if not chunks:
                raise DecodeError(ErrorCode.DECODE_FAILED, f"{type(exc).__name__}: {exc}") from None
            log.debug("decode stopped early: %s", exc)  # the truncation check decides
    if not chunks:
        raise DecodeError(ErrorCode.EMPTY, "the audio stream decodes to no samples")
    return np.concatenate(chunks), rate, header_s


def _planar_to_frames(arr: np.ndarray, frame) -> np.ndarray:
    """PyAV gives (channels, n) for planar and (1, n*channels) for packed formats: → (n, channels) float32."""
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        out = arr.T
    else:
        out = arr.reshape(-1, channels)
    if out.dtype.kind == "i":
        out = out.astype(np.float32) / float(np.iinfo(out.dtype).max + 1)
    elif out.dtype.kind == "u":
        out = (out.astype(np.float32) - 128.0) / 128.0
    return np.ascontiguousarray(out, dtype=np.float32)
