"""The one door to speechmos's internals (pinned: speechmos 0.0.1.1).

`quality` scores DNSMOS, P.808 and PLCMOS with its own onnxruntime sessions (the task's threads, no
memory arena, non-overlapping windows, seeded PLCMOS raters), so it does not call speechmos's
`run`: it opens the ONNX files inside the package and reuses speechmos's feature extraction and score
polynomials, which are methods of classes whose constructors load models of their own. Every such use
goes through this module and nowhere else. tests/test_third_party_internals.py checks the files and
methods below against the installed package and fails, naming this module, when an upgrade moves one.
Importing this module imports nothing heavy: speechmos (and librosa with it) loads on first use.
"""
from __future__ import annotations

import os

# the ONNX files used, relative to the package folder
MODEL_FILES = {
    "dnsmos": "dnsmos_models/sig_bak_ovr.onnx",
    "dnsmos_personalized": "pdnsmos_models/sig_bak_ovr.onnx",
    "p808": "dnsmos_models/model_v8.onnx",
    "plcmos": "plcmos_models/plcmos_v2.onnx",
}
# methods used, with their parameters (speechmos.dnsmos.DNSMOS, speechmos.plcmos.PLCMOS)
METHODS = {
    ("speechmos.dnsmos", "DNSMOS", "audio_melspec"): ("audio",),
    ("speechmos.dnsmos", "DNSMOS", "get_polyfit_val"): ("sig", "bak", "ovr", "is_personalized_MOS"),
    ("speechmos.plcmos", "PLCMOS", "stft_transform"): ("audio",),
}


def model_file(name: str) -> str:
    """The path of one of speechmos's ONNX models (MODEL_FILES)."""
    import speechmos

    return os.path.join(os.path.dirname(speechmos.__file__), MODEL_FILES[name])


class DnsmosFeatures:
    """DNSMOS's P.808 mel features and its P.835 score polynomials, without the sessions its
    constructor would load."""

    def __init__(self):
        from speechmos.dnsmos import DNSMOS

        self._dnsmos = DNSMOS.__new__(DNSMOS)

    def p808_melspec(self, window):
        return self._dnsmos.audio_melspec(audio=window)

    def polyfit(self, sig, bak, ovr, personalized: bool):
        return self._dnsmos.get_polyfit_val(sig, bak, ovr, personalized)


class PlcmosFeatures:
    """PLCMOS v2's STFT features, without the session its constructor would load."""

    def __init__(self):
        from speechmos.plcmos import PLCMOS

        self._plc = PLCMOS.__new__(PLCMOS)

    def stft(self, audio):
        return self._plc.stft_transform(audio)
