"""Which LoRA adapters this server holds: explicit loads (vLLM's /v1/load_lora_adapter), on-demand resolution of
`ft:{base}:{tenant}:{suffix}:{job_id}` ids and plain names through the adapter source, and an LRU of MAX_LORAS.

An adapter is validated completely (engines/adapter_files.py) before the engine sees it; a bad one is refused with
a 4xx and the server keeps serving. An adapter evicted by the LRU keeps its source, so it reloads on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import string
import tempfile
from collections import OrderedDict
from pathlib import Path

from ministudio_common import s3uri
from ministudio_serve.engines.adapter_files import AdapterError, read_adapter
from ministudio_serve.engines.base import AdapterHandle, Engine
from ministudio_serve.errors import ApiError, ModelNotFound

log = logging.getLogger(__name__)
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_ft_id(model: str) -> dict[str, str] | None:
    """Split `ft:{base}:{tenant}:{suffix}:{job_id}`; the base may itself contain ':' or '/'."""
    if not model.startswith("ft:"):
        return None
    parts = model[3:].rsplit(":", 3)
    if len(parts) != 4 or not all(parts):
        return None
    base, tenant, suffix, job_id = parts
    return {"base": base, "tenant": tenant, "suffix": suffix, "job_id": job_id}


class AdapterMissing(AdapterError):
    """Nothing at the adapter's source: for an on-demand id that means the model does not exist."""


class AdapterService:
    def __init__(
        self,
        engine: Engine,
        base_names: set[str],
        max_loras: int,
        max_rank: int,
        source: str | None = None,
        cache_dir: Path | None = None,
        keep_weights: bool = True,
    ) -> None:
        self.engine = engine
        self.base_names = base_names
        self.max_loras = max_loras
        self.max_rank = max_rank
        self.source = source
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "ministudio-adapters"
        self.keep_weights = keep_weights  # vLLM loads the files itself: validate, but do not hold a second copy
        self._loaded: OrderedDict[str, AdapterHandle] = OrderedDict()  # least recently used first
        self._known: dict[str, str] = {}  # every adapter ever loaded -> its source, for reloads after eviction
        self._locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        # A registry's model (registry.py): these names mean the base plus this adapter, which the LRU never evicts.
        self.served: AdapterHandle | None = None
        self.served_names: set[str] = set()

    def names(self) -> list[str]:
        return list(self._loaded)

    def loaded_count(self) -> int:
        return len(self._loaded)

    async def load(self, name: str, path: str) -> AdapterHandle:
        """Explicit load: a name already in use is refused (peft would silently replace the old adapter)."""
        if not name or name in self.base_names:
            raise ApiError(
                400, f"'{name}' cannot name an adapter: it is empty or the base model's name", param="lora_name"
            )
        async with self._lock(name):  # checked under the lock: two racing loads of one name load it once
            if name in self._loaded or name in self._known:
                raise ApiError(
                    400, f"The lora adapter '{name}' has already been loaded.", code="adapter_exists", param="lora_name"
                )
            return await self._load(name, path)

    async def unload(self, name: str) -> None:
        handle = self._loaded.pop(name, None)
        known = self._known.pop(name, None)
        if handle is None and known is None:
            raise ApiError(
                404, f"The lora adapter '{name}' cannot be found.", code="adapter_not_found", param="lora_name"
            )
        if handle is not None:
            await self.engine.remove_adapter(handle)

    async def serve_as(self, names: set[str], path: str) -> AdapterHandle:
        """Serve `names` as the base model plus the adapter at path: how a registered LoRA model is served."""
        label = sorted(names)[0]
        handle = await self._validated(label, path)
        await self.engine.add_adapter(handle)
        self.served, self.served_names = handle, set(names)
        log.info("serving %s as the base model plus the adapter at %s (r=%d)", label, path, handle.rank)
        return handle

    async def resolve(self, model: str) -> AdapterHandle | None:
        """None for the base model; the adapter's handle otherwise, loading it first when needed."""
        if model in self.served_names:
            return self.served
        if model in self.base_names:
            return None
        handle = self._loaded.get(model)
        if handle is not None:
            self._loaded.move_to_end(model)
            return handle
        path = self._known.get(model) or self._source_for(model)
        async with self._lock(model):
            if model in self._loaded:  # another request loaded it while this one waited
                return self._loaded[model]
            try:
                return await self._load(model, path)
            except AdapterMissing:
                raise ModelNotFound(model) from None

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _source_for(self, model: str) -> str:
        if self.source is None:
            raise ModelNotFound(model)
        fields = parse_ft_id(model) or {"name": model}
        if "base" in fields and fields["base"] not in self.base_names:
            raise ModelNotFound(model)
        fields.setdefault("name", model)
        used = {field for _, field, _, _ in string.Formatter().parse(self.source) if field}
        # Values become path segments: only plain names, so no id can climb out of the template's prefix.
        if any(not _SAFE.match(fields.get(field, "")) for field in used - {"base"}):
            raise ModelNotFound(model)
        try:
            return self.source.format(**fields)
        except (KeyError, IndexError, ValueError):  # the template needs fields this id does not have
            raise ModelNotFound(model) from None

    async def _validated(self, name: str, path: str) -> AdapterHandle:
        local = await asyncio.to_thread(self._fetch, path)
        weights = await asyncio.to_thread(
            read_adapter, local, self.engine.lora_targets(), self.base_names, self.max_rank, self.keep_weights
        )
        return AdapterHandle(
            name=name,
            uid=next(self._ids),
            path=str(local),
            rank=weights.rank,
            weights=weights if self.keep_weights else None,
        )

    async def _load(self, name: str, path: str) -> AdapterHandle:
        handle = await self._validated(name, path)
        await self.engine.add_adapter(handle)
        self._loaded[name] = handle
        self._known[name] = path
        while len(self._loaded) > self.max_loras:
            old_name, old = self._loaded.popitem(last=False)
            log.info("evicting adapter %s (least recently used)", old_name)
            await self.engine.remove_adapter(old)
        log.info("loaded adapter %s from %s (r=%d)", name, path, handle.rank)
        return handle

    def _fetch(self, path: str) -> Path:
        if not s3uri.is_s3(path):
            local = Path(path).expanduser()
            if not local.exists():
                raise AdapterMissing(f"adapter path {path} does not exist")
            return local
        dest = self.cache_dir / hashlib.sha256(path.encode()).hexdigest()[:16]
        if not (dest / "adapter_config.json").is_file():
            try:
                s3uri.download(path.rstrip("/") + "/", dest)
            except FileNotFoundError as exc:
                raise AdapterMissing(f"no adapter files under {path}") from exc
            except Exception as exc:  # boto3 raises many types; the caller needs one clear answer
                raise AdapterError(f"could not download {path}: {type(exc).__name__}: {exc}") from exc
        return dest
