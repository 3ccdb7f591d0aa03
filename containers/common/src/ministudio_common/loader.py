"""Resolve a base model reference to a local directory of safetensors weights, offline when it can be.

A reference is a catalogue name (`HuggingFaceTB/SmolLM2-135M-Instruct`), a local model directory, a `.gguf`
file, an `s3://` prefix, or a hub id (fetched only where the network allows). GGUF weights are converted once to
safetensors in a cache: parsing GGUF takes ~15 s, the converted copy loads in ~1.4 s (FINDINGS.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ministudio_common import catalogue, s3uri

CACHE_ENV = "MINISTUDIO_MODEL_CACHE"


class ModelNotFound(LookupError):
    """The reference names no model this process can reach."""


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ministudio", "models"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Several processes (trainer, servers, tests) may convert the same model at once: one does, others wait.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF file to an fp32 safetensors directory (model + tokenizer) at dest, atomically."""
    with _locked(dest):
        if _is_model_dir(dest):
            return dest
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # save_pretrained refuses a model still marked GGUF-quantized; the weights are already dequantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".convert-"))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def resolve(ref: str, s3: Any | None = None) -> Path:
    """Return a local directory with config.json, safetensors weights and tokenizer files for ref."""
    entry = catalogue.lookup(ref)
    if entry is not None:
        gguf = entry.packaged_gguf()
        if gguf is not None:
            return convert_gguf(gguf, cache_root() / ("catalogue-" + _slug(ref)))
    path = Path(ref).expanduser()
    if path.is_dir() and _is_model_dir(path):
        return path
    if path.is_file() and path.suffix == ".gguf":
        stat = path.stat()
        return convert_gguf(path, cache_root() / ("gguf-" + _slug(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime}")))
    if s3uri.is_s3(ref):
        prefix = ref.rstrip("/") + "/"  # `s3://b/m` and `s3://b/m/` are one model: one cache entry
        dest = cache_root() / ("s3-" + _slug(prefix))
        with _locked(dest):
            if not _is_model_dir(dest):
                s3uri.download(prefix, dest, s3=s3)
        if not _is_model_dir(dest):
            raise ModelNotFound(f"{ref} holds no config.json: not a model directory")
        return dest
    return _from_hub(ref, entry is not None)


def _from_hub(ref: str, in_catalogue: bool) -> Path:
    hint = " (its weights package is not installed)" if in_catalogue else ""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in ref:
        raise ModelNotFound(f"model {ref!r} is not available offline{hint}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref))
    except Exception as exc:  # network errors, missing repos and auth all mean the same to the caller
        raise ModelNotFound(f"model {ref!r} could not be fetched: {exc}") from exc
