"""CUDA_VISIBLE_DEVICES (seed 002's "GPU device ID"): CUDA reads it when torch first touches the GPU, so the server
sees, and `cuda`/`cuda:N` means, only the devices it names. /info reports which ones those are."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

_ORDINAL = re.compile(r"[+-]?\d+")


def parse_visible_devices(value: str | None) -> list[str] | None:
    """The device ids CUDA_VISIBLE_DEVICES names, in order; None when unset (every device is visible).

    The rules CUDA follows (and torch's `_parse_visible_devices`): a list of UUIDs (`GPU-...`, `MIG-...`) ends at the
    first entry without that prefix; otherwise each entry is read as an ordinal by its leading digits (`1gpu` is 1),
    the list ending at the first entry that is negative or not a number (`-1` or an empty value: no devices). A
    repeated id hides every device.
    """
    if value is None:
        return None
    for prefix in ("GPU-", "MIG-"):
        if value.startswith(prefix):
            uuids: list[str] = []
            for entry in value.split(","):
                if entry in uuids:
                    return []
                if not entry.startswith(prefix):
                    break
                uuids.append(entry)
            return uuids
    ordinals: list[int] = []
    for entry in value.split(","):
        match = _ORDINAL.match(entry.strip())
        ordinal = int(match.group()) if match else -1
        if ordinal in ordinals:
            return []
        if ordinal < 0:
            break
        ordinals.append(ordinal)
    return [str(ordinal) for ordinal in ordinals]


def visible_cuda_devices() -> list[dict[str, Any]] | None:
    """The CUDA devices this process uses, each `{index, id, name}` (`id`: the CUDA_VISIBLE_DEVICES entry behind
    `cuda:index`, else the index itself); None without torch or CUDA."""
    torch = sys.modules.get("torch")  # the tabular profile never imports torch: no GPU to report
    if torch is None or not torch.cuda.is_available():
        return None
    named = parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    devices = []
    for index in range(torch.cuda.device_count()):
        device_id = named[index] if named is not None and index < len(named) else str(index)
        devices.append({"index": index, "id": device_id, "name": torch.cuda.get_device_name(index)})
    return devices
