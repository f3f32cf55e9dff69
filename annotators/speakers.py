"""Speakers: who speaks and how many, from Resemblyzer's GE2E voice encoder (weights inside its wheel).

The file is cut into 1.6 s partial windows (`rate` per second); only windows at least half inside the
VAD's speech are embedded. The file's `embedding` is their L2-normalised mean (256 floats): what
`voxlake link` compares across the archive to give every file a `speaker_cluster_id`.

Inside the file, the partial embeddings are clustered (agglomerative, average linkage on cosine
distance, scikit-learn) with `threshold` as the distance at which clusters stop merging; a cluster
holding less than `min_speaker_share` of the speech windows, and less than `min_speaker_s` of speech, is
merged into its nearest large one (a cough or a laugh is not a speaker; in a long recording a guest who
speaks for a minute is, however long the host talks: the clips annotator needs their turns). In a long
recording a cluster of at least `min_voice_s` of windows also stays a speaker when it sounds like none of
the large ones (centroid cosine similarity under `merge_similarity`): a few seconds of another voice
between the host's passages. `n_speakers` counts the clusters left; `turns` are the runs of
consecutive windows with one label. There is no overlap detection: two voices at once go to one of them.
The threshold was tuned on the corpus's multi-speaker recordings (bench `speakers`).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators.base import Annotator, AudioItem, Resources, SkipAnnotation
from annotators.torch_exports import cpu_session
from annotators.vad import speech_before
from schemas.errors import ErrorCode

SR = 16000
WINDOW_S = 1.6  # resemblyzer's partial utterance (160 mel frames of 10 ms)
HOP = 160  # resemblyzer's 10 ms mel step, in samples
MEL_MARGIN = 4  # frames of audio beyond a group's windows: a 25 ms frame reaches 1.25 frames past its centre
EMBED_BATCH = 256  # windows per encoder call (~100 s of audio at rate 2.5)


def mel_frames(x: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 mel power frames, 25 ms every 10 ms: resemblyzer's `wav_to_mel_spectrogram`
    (the same librosa call), here because importing resemblyzer imports torch."""
    import librosa

    mel = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=400, hop_length=HOP, n_mels=40)
    return mel.astype(np.float32).T


TURN = pa.struct([pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
                  pa.field("speaker", pa.int32())])


def cluster_windows(embeds: np.ndarray, threshold: float, min_share: float, max_windows: int = 0,
                    min_windows: int = 0, voice_windows: int = 0, merge_similarity: float = 1.0) -> np.ndarray:
    """Labels 0..k-1 (by first appearance) for unit-norm window embeddings.

    A cluster of fewer than `min_share` of the windows joins its nearest large cluster. In a long
    recording (where `min_windows` is the smaller bar) a cluster is large from `min_windows` on, and a
    smaller one of at least `voice_windows` stays a voice of its own when its centroid's cosine similarity
    to every large cluster's is under `merge_similarity` (on the long-form tests a few seconds of another
    voice sat at 0.5-0.6, stray groups of the main voice's windows at 0.8 and above).

    Agglomerative clustering needs all pairwise distances (n² memory and time: 2.9 GB of them for
    the 27,000 windows of 3 hours of speech), so above `max_windows` it runs on that many evenly spaced
    windows and every window then joins the nearest of the clusters found."""
    if len(embeds) < 2:
        return np.zeros(len(embeds), dtype=np.int32)
    if max_windows and len(embeds) > max_windows:
        sample = embeds[np.linspace(0, len(embeds) - 1, max_windows).round().astype(int)]
        scale = max_windows / len(embeds)
        labels = cluster_windows(sample, threshold, min_share, min_windows=int(np.ceil(min_windows * scale)),
                                 voice_windows=int(np.ceil(voice_windows * scale)), merge_similarity=merge_similarity)
        centroids = np.stack([sample[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        return first_appearance(np.argmax(embeds @ centroids.T, axis=1))
    from sklearn.cluster import AgglomerativeClustering

    raw = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="cosine",
                                  linkage="average").fit_predict(embeds)
    sizes = np.bincount(raw)
    floor = min_share * len(embeds)
    long_recording = bool(min_windows) and min_windows < floor
    if long_recording:  # a guest who speaks a minute is a speaker, however long the host talks
        floor = min_windows
    large = np.flatnonzero(sizes >= max(1.0, floor))
    if len(large) == 0:
        large = np.array([int(np.argmax(sizes))])

    def centroids_of(clusters):
        c = np.stack([embeds[raw == k].mean(axis=0) for k in clusters])
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    centroids = centroids_of(large)
    if long_recording and voice_windows:
        candidates = np.flatnonzero((sizes >= voice_windows) & (sizes < floor))
        if len(candidates):
            distinct = candidates[(centroids_of(candidates) @ centroids.T).max(axis=1) < merge_similarity]
            if len(distinct):
                large = np.sort(np.concatenate([large, distinct]))
                centroids = centroids_of(large)
    merged = np.where(np.isin(raw, large), raw, -1)
    small = merged < 0
    if small.any():  # each window of a small cluster joins the nearest large cluster
        merged[small] = large[np.argmax(embeds[small] @ centroids.T, axis=1)]
    return first_appearance(merged)


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """The same partition, relabelled 0..k-1 in the order the labels first appear."""
    _, first = np.unique(labels, return_index=True)
    order = {int(labels[i]): k for k, i in enumerate(sorted(first))}
    return np.array([order[int(v)] for v in labels], dtype=np.int32)


def volume_gain(x: np.ndarray, target_dbfs: float) -> np.float32:
    """The gain resemblyzer's `normalize_volume(x, target_dbfs, increase_only=True)` applies (1.0 when
    the file is already louder), with its RMS summed in float64 a minute at a time rather than over
    int16-scaled float copies of the whole file."""
    step = 60 * SR
    power = sum(float(np.dot(c, c)) for c in (x[a: a + step].astype(np.float64) for a in range(0, len(x), step)))
    if power == 0.0:  # digital silence (never embedded: it has no VAD speech)
        return np.float32(1.0)
    change = target_dbfs - 20 * np.log10(np.sqrt(power / len(x)))  # dBFS of the RMS
    return np.float32(1.0) if change < 0 else np.float32(10 ** (change / 20))


def _pad_rows(mel: np.ndarray, frames: int) -> np.ndarray:
    """A window's mel frames, zero-padded at the end to `frames` (a file shorter than one window)."""
    return mel if len(mel) >= frames else np.pad(mel, ((0, frames - len(mel)), (0, 0)))


def turns_from_labels(centers: np.ndarray, labels: np.ndarray, step_s: float) -> list[dict]:
    """Runs of consecutive windows with one label, each covering its windows' centres ± step/2."""
    turns: list[dict] = []
    for c, lab in zip(centers, labels, strict=True):
        start, end = max(0.0, c - step_s / 2), c + step_s / 2
        if turns and turns[-1]["speaker"] == int(lab) and start - turns[-1]["end_s"] < 1e-6 + step_s:
            turns[-1]["end_s"] = end
        else:
            turns.append({"start_s": start, "end_s": end, "speaker": int(lab)})
    return turns


class Speakers(Annotator):
    name = "speakers"
    expensive = True  # a speaker-embedding network over every speech turn
    # 1.1: long files in bounded memory; 1.2: the encoder in onnxruntime on CPU; 1.3: min_speaker_s
    version = "1.3.0"
    requires = ("vad",)
    resources = Resources(cpu_threads=1, gpu=True)
    default_params = {"rate": 2.5, "threshold": 0.31, "min_speaker_share": 0.15, "min_speaker_s": 8.0,
                      "min_voice_s": 1.6, "merge_similarity": 0.75,
                      "min_speech_window": 0.5,
                      "max_cluster_windows": 2000,  # 13 min of speech at rate 2.5
                      "cache_dir": ".deps/models"}  # where the encoder's ONNX export is kept
    fields = [
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("n_speakers", pa.int32()),
        pa.field("turns", pa.list_(TURN)),
        pa.field("n_windows", pa.int32()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        if device != "cuda":  # the encoder's ONNX export in onnxruntime: a CPU worker never imports torch
            self._session = cpu_session("resemblyzer", self.params["cache_dir"], threads)
            self._encoder = None
            return
        import warnings

        with warnings.catch_warnings():  # webrtcvad, imported by resemblyzer, still imports pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder(f"cuda:{device_index}", verbose=False)

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        """(windows, 256) unit-length embeddings of (windows, 160, 40) mel frames."""
        if self._encoder is None:
            return self._session.run(None, {"mels": mels})[0]
        import torch

        with torch.no_grad():
            return self._encoder(torch.from_numpy(mels).to(self._encoder.device)).cpu().numpy()

    def window_embeddings(self, x: np.ndarray, segments: list[dict]) -> tuple[np.ndarray, np.ndarray, float]:
        """(embeddings of the speech windows, their centres in seconds, the step between windows)."""
        step = max(1, int(round(SR / self.params["rate"])))
        win = int(WINDOW_S * SR)
        if len(x) < win:
            x = np.pad(x, (0, win - len(x)))
        starts = np.arange(0, len(x) - win + 1, step)
        if len(starts) == 0 or starts[-1] + win < len(x) - step // 2:
            starts = np.append(starts, len(x) - win)
        speech_share = (speech_before(starts + win, SR, segments, len(x))
                        - speech_before(starts, SR, segments, len(x))) / win
        starts = starts[speech_share >= self.params["min_speech_window"]]
        if len(starts) == 0:
            return np.zeros((0, 256), np.float32), np.zeros(0), step / SR
        # resemblyzer's level normalisation (-30 dBFS, never lowering), as a gain applied to each group
        # of windows below instead of to a copy of the whole file
        gain = volume_gain(x, -30.0)
        frames = int(WINDOW_S * 100)
        embeds = []
        # EMBED_BATCH windows at a time, each group's mel frames computed on its own stretch of audio (plus
        # a margin, on the 10 ms frame grid, so the frames used equal the whole file's): the mel features
        # and the encoder's activations of a long file would otherwise be held all at once
        for g in range(0, len(starts), EMBED_BATCH):
            group = starts[g: g + EMBED_BATCH]
            lo = max(0, (int(group[0]) // HOP - MEL_MARGIN) * HOP)
            hi = min(len(x), (int(group[-1]) // HOP + frames + MEL_MARGIN) * HOP)
            mel = mel_frames(x[lo:hi].astype(np.float32) * gain)  # 10 ms frames from `lo`
            batch = np.stack([_pad_rows(mel[s // HOP - lo // HOP: s // HOP - lo // HOP + frames], frames)
                              for s in group])
            embeds.append(self._embed(batch))
        return np.concatenate(embeds), (starts + win / 2) / SR, step / SR

    def annotate(self, item: AudioItem) -> dict:
        segments = item.upstream["vad"].get("speech_segments") or []
        if not segments:
            raise SkipAnnotation(ErrorCode.NO_SPEECH, "no speech to embed")
        embeds, centers, step_s = self.window_embeddings(item.samples, segments)
        if len(embeds) == 0:
            raise SkipAnnotation(ErrorCode.TOO_SHORT, "no 1.6 s window is half speech")
        mean = embeds.mean(axis=0)
        labels = cluster_windows(embeds, self.params["threshold"], self.params["min_speaker_share"],
                                 min_windows=int(np.ceil(self.params["min_speaker_s"] * self.params["rate"])),
                                 voice_windows=int(np.ceil(self.params["min_voice_s"] * self.params["rate"])),
                                 merge_similarity=self.params["merge_similarity"],
                                 max_windows=self.params["max_cluster_windows"])
        return {
            "embedding": (mean / np.linalg.norm(mean)).astype(np.float32).tolist(),
            "n_speakers": int(labels.max()) + 1,
            "turns": turns_from_labels(centers, labels, step_s),
            "n_windows": len(embeds),
        }
