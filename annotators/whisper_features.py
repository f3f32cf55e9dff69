"""Whisper's log-mel features of a long file, computed a stretch at a time.

faster-whisper's `FeatureExtractor.__call__` holds a whole file's padded copies, windowed frames and
complex spectrum at once (for an hour of audio, the windowed frames and two copies of the complex64
spectrum alone are 1.7 GB, by their shapes). The features of a frame depend on its own
400 samples only, except for the final clamp to 8 (log10 units) below the file's loudest value; so
here the frames are computed PIECE_FRAMES at a time from the same padded signal (160 zero samples
appended, then 200 reflected samples on each side, as faster-whisper pads), and the clamp is applied
once to the whole (n_mels, frames) result, which is 0.3 GB for three hours. A test checks the
features equal faster-whisper's.
"""
from __future__ import annotations

import numpy as np

from annotators import faster_whisper_internals as fw

PIECE_FRAMES = 6000  # 60 s of 10 ms frames per piece
TAIL_PADDING = 160  # zero samples faster-whisper appends before the STFT


def _padded_stretch(x: np.ndarray, lo: int, hi: int, half: int) -> np.ndarray:
    """Samples [lo, hi) of reflect_pad(x + TAIL_PADDING zeros, half), without building that signal."""
    length = len(x) + TAIL_PADDING
    idx = np.arange(lo, hi) - half
    idx = np.abs(idx)  # numpy's 'reflect' mode: the edge sample is not repeated
    idx = np.where(idx >= length, 2 * (length - 1) - idx, idx)
    out = np.zeros(hi - lo, np.float32)
    inside = idx < len(x)
    out[inside] = x[idx[inside]]
    return out


def as_int16_grid(x: np.ndarray) -> np.ndarray:
    """Round to 16-bit steps, as faster-whisper's own decode_audio does (FFmpeg converts to s16 there).

    Beam search is sensitive to input noise at that level: without this, a third of the corpus files
    came out with a different comma or word than bare faster-whisper on the same file.
    """
    out = np.empty(len(x), np.float32)
    step = 960_000  # a minute at a time: the float temporaries of a long file's whole signal are GBs
    for a in range(0, len(x), step):
        out[a: a + step] = np.clip(np.rint(x[a: a + step] * 32768.0), -32768, 32767) / 32768.0
    return out


def log_mel(extractor, audio: np.ndarray, int16_grid: bool = False) -> np.ndarray:
    """The features `extractor(audio)` returns (faster-whisper's FeatureExtractor, default padding);
    with `int16_grid`, those of `extractor(as_int16_grid(audio))`, rounding each stretch as it is read
    (rounding is per sample, and the padding's zeros are on the grid)."""
    parts = fw.spectrogram(extractor)
    n_fft, hop = parts.n_fft, parts.hop_length
    half = n_fft // 2
    if len(audio) + TAIL_PADDING <= half:  # reflected more than once: not a long file, use the original
        return extractor(as_int16_grid(audio) if int16_grid else audio)
    frames = 1 + (len(audio) + TAIL_PADDING + 2 * half - n_fft) // hop
    kept = frames - 1  # faster-whisper drops the last STFT frame
    window = np.hanning(n_fft + 1)[:-1].astype("float32")
    out = np.empty((parts.mel_filters.shape[0], kept), np.float32)
    # The last piece includes the frame faster-whisper drops, so that it transforms the same frames.
    # With pieces of 6,000 frames the features were bit-identical to one pass on every input tried (43,
    # up to 262 s) on the machines this was written on; pieces of 16 frames differed in the last bit on
    # some, from the arithmetic's order. On an AVX2-only EPYC, whose BLAS blocks the mel matmul
    # differently, files of more than one piece differed by up to 1.2e-7 (one float32 step at 1.0).
    for a in range(0, kept, PIECE_FRAMES):
        b = min(frames, a + PIECE_FRAMES)
        piece = _padded_stretch(audio, a * hop, (b - 1) * hop + n_fft, half)
        if int16_grid:
            piece = as_int16_grid(piece)
        stft = parts.stft(piece, n_fft, hop, window=window, return_complex=True, center=False)
        b = min(b, kept)
        magnitudes = np.abs(stft.astype("complex64")[:, : b - a]) ** 2
        out[:, a:b] = np.log10(np.clip(parts.mel_filters @ magnitudes, a_min=1e-10, a_max=None))
    np.maximum(out, out.max() - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out
