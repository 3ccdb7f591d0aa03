"""What the control plane knows of base models: the names tenants use, when each was published and the compute a
fine-tuning job on it gets by default. The table itself is containers/common's (`ministudio_common.catalogue`,
vendored into the Lambda bundle); where the weights come from is the images' business."""

from __future__ import annotations

from ministudio_common import catalogue
from ministudio_common.spec import Compute

# Release dates (Unix seconds) for `created` in /v1/models.
CREATED = {entry.name: entry.created for entry in catalogue.CATALOGUE.values()}
OWNER = "ministudio"


def created(model: str) -> int:
    return CREATED.get(model, 0)


def default_compute(model: str) -> Compute:
    return catalogue.default_compute(model)


def memory_gb(model: str) -> float | None:
    entry = catalogue.lookup(model)
    return entry.memory_gb if entry is not None else None
