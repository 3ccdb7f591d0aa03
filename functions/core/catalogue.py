"""What the control plane knows of base models: the names tenants use and when each was published.

Where the weights come from is the images' business (containers/common); the control plane only needs names.
"""

from __future__ import annotations

# Release dates (Unix seconds) for `created` in /v1/models.
CREATED = {"HuggingFaceTB/SmolLM2-135M-Instruct": 1730419200}
OWNER = "ministudio"


def created(model: str) -> int:
    return CREATED.get(model, 0)
