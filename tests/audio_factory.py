"""Makes real audio files and deliberately broken ones for tests (numpy + soundfile + PyAV only)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(freq=440.0, seconds=1.0, sr=SR, dbfs=-20.0):
    t = np.arange(int(seconds * sr)) / sr
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, data, sr=SR, subtype="PCM_16", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype, format=fmt)
    return path


def make_video_without_audio(path: Path, frames: int = 10) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), i * 20 % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_bad_inputs(root: Path) -> dict[str, str | None]:
    """Write the bad-input matrix under root. Returns {relative path: expected error code or None}."""
    rng = np.random.default_rng(7)
    expected: dict[str, str | None] = {}

    (root / "empty.wav").parent.mkdir(parents=True, exist_ok=True)
    (root / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "EMPTY"

    (root / "random_bytes.wav").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    expected["random_bytes.wav"] = "UNKNOWN_FORMAT"

    (root / "text_named.mp3").write_text("This is a text file, not an MP3.\n" * 40)
    expected["text_named.mp3"] = "UNKNOWN_FORMAT"

    full = write_wav(root / "_tmp_full.wav", tone(seconds=2.0))
    data = full.read_bytes()
    (root / "header_promises_more.wav").write_bytes(data[: len(data) // 3])
    expected["header_promises_more.wav"] = "TRUNCATED"

    write_wav(root / "_tmp_full.flac", rng.normal(0, 0.1, SR * 3).astype(np.float32), fmt="FLAC")
    flac = (root / "_tmp_full.flac").read_bytes()
    (root / "cut_short.flac").write_bytes(flac[: int(len(flac) * 0.6)])
    expected["cut_short.flac"] = "TRUNCATED"
    full.unlink()
    (root / "_tmp_full.flac").unlink()

    nan = tone(seconds=0.5)
    nan[::7] = np.nan
    write_wav(root / "nan_float.wav", nan, subtype="FLOAT")
    expected["nan_float.wav"] = None  # the header is fine; decoding flags NON_FINITE later

    make_video_without_audio(root / "video_no_audio.mp4")
    expected["video_no_audio.mp4"] = "NO_AUDIO_STREAM"

    write_wav(root / "one_sample.wav", np.array([0.25], dtype=np.float32))
    expected["one_sample.wav"] = None

    write_wav(root / "dir with space" / "héllo wörld 日本.wav", tone(330, 0.7))
    expected["dir with space/héllo wörld 日本.wav"] = None

    write_wav(root / "a" / "b" / "c" / "deep.flac", tone(550, 0.6), fmt="FLAC")
    expected["a/b/c/deep.flac"] = None

    write_wav(root / "twin_1.wav", tone(660, 0.5))
    shutil.copyfile(root / "twin_1.wav", root / "twin_2.wav")
    expected["twin_1.wav"] = None
    expected["twin_2.wav"] = None

    (root / "readme.txt").write_text("not listed: not an audio extension\n")
    return expected


def encode_av(path: Path, data: np.ndarray, sr: int, codec: str, fmt: str | None = None,
              with_video: bool = False) -> Path:
    """Encode mono float audio with PyAV/FFmpeg (mp3, aac/m4a, opus, an mp4 with a video track...)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        video = None
        if with_video:
            video = out.add_stream("mpeg4", rate=10)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(codec, rate=sr)
        stream.layout = "mono"
        fmt_name = stream.codec_context.codec.audio_formats[0].name
        frame_size = stream.codec_context.frame_size or 1024
        pcm = np.clip(data, -1, 1).astype(np.float32)
        for start in range(0, len(pcm), frame_size):
            chunk = pcm[start: start + frame_size]
            if fmt_name.startswith(("s16", "s32")):
                bits = 16 if fmt_name.startswith("s16") else 32
                dtype = np.int16 if bits == 16 else np.int32
                arr = (chunk.astype(np.float64) * (2 ** (bits - 1) - 1)).astype(dtype)[None, :]
                frame = av.AudioFrame.from_ndarray(arr, format=fmt_name, layout="mono")
            else:
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt_name, layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if video is not None:
            for i in range(int(len(pcm) / sr * 10)):
                img = np.full((48, 64, 3), (i * 9) % 255, dtype=np.uint8)
                for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in video.encode():
                out.mux(packet)
    return path


def load_16k(path) -> np.ndarray:
    """Real audio as 16 kHz mono float32 (through the project's decoder)."""
    from annotators.decode import decode

    with open(path, "rb") as f:
        return decode(f).samples


def make_duplicates(src: Path, out: Path) -> list[str]:
    """Copies of one recording that must land in one duplicate group: the same PCM in another container,
    an MP3, a 22.05 kHz WAV at -3 dB and a FLAC with the first 0.5 s trimmed. Returns their names."""
    import soundfile as sf
    import soxr

    out.mkdir(parents=True, exist_ok=True)
    native, sr = sf.read(str(src), dtype="float32", always_2d=True)
    mono = native.mean(axis=1)
    sf.write(str(out / "copy_same_pcm.wav"), native, sr, subtype=sf.info(str(src)).subtype)  # same samples
    encode_av(out / "copy.mp3", mono, sr, "libmp3lame")
    write_wav(out / "copy_22k_minus3db.wav", soxr.resample(mono, sr, 22050) * 10 ** (-3 / 20), sr=22050)
    sf.write(str(out / "copy_trimmed.flac"), native[int(0.5 * sr):], sr)
    return ["copy_same_pcm.wav", "copy.mp3", "copy_22k_minus3db.wav", "copy_trimmed.flac"]
