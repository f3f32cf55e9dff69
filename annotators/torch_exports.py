"""Torch models exported once to ONNX, so that a CPU worker runs them in onnxruntime without importing torch.

Importing torch costs a Python worker hundreds of MiB of resident memory before any model is loaded
(BENCHMARKS.md, "Annotate stage"), and two annotators (distillmos, speakers) were its only users on CPU. Their packages ship
torch weights only, so the first worker that needs a model exports it in a child process (which imports
torch, exports, checks the ONNX model against torch on a fixed input, and exits), into the model cache;
every later worker just loads the file. On a GPU task the annotators keep torch, which earns its place there.

    python -m annotators.torch_exports --cache .deps/models     # what `make setup` runs (all of them)
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bump when an export's wrapper or input changes: the file name changes with it
TOLERANCE = 1e-4  # largest difference to torch's output an export may show on its check input
# name → (the package whose weights it exports, the file inside it that holds them)
MODELS = {
    "distillmos": ("distillmos", "weights/distill_mos_v7.pt"),
    "resemblyzer": ("Resemblyzer", "pretrained.pt"),
}


class ExportError(RuntimeError):
    """The ONNX export could not be made; the message holds the child's last lines."""


def _weights(name: str) -> Path:
    package, relative = MODELS[name]
    files = importlib.metadata.files(package) or []
    for f in files:
        if str(f).replace("\\", "/").endswith(relative):
            return Path(f.locate())
    raise ExportError(f"{package} is not installed (or its weights file {relative} is missing)")


def export_path(name: str, cache_dir: str | Path) -> Path:
    """The ONNX file for `name` as its installed package's version and weights make it."""
    package, _ = MODELS[name]
    version = importlib.metadata.version(package)
    size = _weights(name).stat().st_size
    return Path(cache_dir) / "onnx" / f"{name}-{version}-{size}-f{EXPORT_FORMAT}.onnx"


def _writable(folder: Path) -> Path:
    """`folder`, or a per-user temporary folder when it cannot be written (a read-only cluster image)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return folder
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"voxlake-models-{os.getuid()}" / "onnx"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def onnx_model(name: str, cache_dir: str | Path) -> Path:
    """The exported model's path, exporting it first (in a child process) when no worker has yet."""
    target = export_path(name, cache_dir)
    folder = _writable(target.parent)
    target = folder / target.name
    if target.is_file():
        return target
    log.info("exporting %s to ONNX (once per model cache): %s", name, target)
    # the child imports this package as the worker did: under spark-submit --py-files it sits in a zip
    # that the worker put on sys.path, not on PYTHONPATH
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "annotators.torch_exports", "--export", name, "--to", str(target)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, env=env)
    if done.returncode != 0 or not target.is_file():
        tail = "\n".join(done.stdout.splitlines()[-12:])
        raise ExportError(f"exporting {name} to ONNX failed (exit {done.returncode}):\n{tail}")
    return target


def cpu_session(name: str, cache_dir: str | Path, threads: int):
    """An onnxruntime CPU session of the exported model (exported first when it is not yet)."""
    import onnxruntime as ort

    from annotators.onnx import session_options

    return ort.InferenceSession(str(onnx_model(name, cache_dir)), session_options(threads),
                                providers=["CPUExecutionProvider"])


def _distillmos():
    """DistillMOS after its front end: (windows, 2, 161, frames) compressed spectra → MOS (windows, 1).

    torch's ONNX exporter cannot export the complex STFT of the model's first step, so that step is
    computed in numpy (annotators.distillmos_frontend) and the export starts after it."""
    import contextlib
    import io

    import numpy as np
    import torch
    from distillmos import ConvTransformerSQAModel

    from annotators.distillmos_frontend import WINDOW, compressed_spectra

    with contextlib.redirect_stdout(io.StringIO()):
        model = ConvTransformerSQAModel(segmenting_in_forward=False).eval()

    class AfterFrontEnd(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, spectra):
            x = torch.flatten(self.m.cnn.cnn(spectra), 1, -2)
            return 1 + 4 * self.m.transformer_pool_attn(x.permute(0, 2, 1))

    audio = (np.random.default_rng(0).standard_normal((3, WINDOW)) * 0.1).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(audio)).numpy()
    spectra = compressed_spectra(audio)
    return AfterFrontEnd(model).eval(), spectra, reference, {"spectra": {0: "n"}}, "spectra"


def _resemblyzer():
    """Resemblyzer's speaker encoder: (windows, frames, 40) mel frames → unit-length embeddings (windows, 256)."""
    import numpy as np
    import torch
    from resemblyzer import VoiceEncoder

    model = VoiceEncoder("cpu", verbose=False).eval()
    mels = np.abs(np.random.default_rng(0).standard_normal((3, 160, 40))).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(mels)).numpy()
    return model, mels, reference, {"mels": {0: "n", 1: "frames"}}, "mels"


def _export(name: str, target: Path) -> None:
    """In a child process: export, check against torch, move into place atomically."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    warnings.filterwarnings("ignore")  # the exporter's deprecation notes; the check below is what counts
    torch.set_num_threads(1)
    module, example, reference, dynamic, input_name = {"distillmos": _distillmos, "resemblyzer": _resemblyzer}[name]()
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.onnx.export(module, (torch.from_numpy(example),), str(staged), input_names=[input_name],
                          output_names=["out"], dynamic_axes={**dynamic, "out": {0: "n"}}, opset_version=17,
                          dynamo=False)
        session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        got = session.run(None, {input_name: example})[0]
        worst = float(np.abs(got - reference).max())
        if not worst <= TOLERANCE:
            raise ExportError(f"{name}: the ONNX model differs from torch by {worst:.2e} (> {TOLERANCE})")
        os.replace(staged, target)  # concurrent exporters: whichever lands last, the files are the same
    finally:
        staged.unlink(missing_ok=True)
    print(f"{name} -> {target} (largest difference to torch on the check input: {worst:.1e})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotators.torch_exports", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".deps/models", help="model cache folder (as the annotators' cache_dir)")
    parser.add_argument("--export", choices=sorted(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export:
        _export(args.export, Path(args.to))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in sorted(MODELS):
        try:
            print(f"{name}: {onnx_model(name, args.cache)}")
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
