"""Model types, versions and the active model of each tenant, kept in a BlobStore:

    tabular/{tenant}/active.json                              {"model_type", "version"}: the tenant's active model
    tabular/{tenant}/models/{model_type}/active.json          {"version"}: the type's active version (else latest)
    tabular/{tenant}/models/{model_type}/{version}/metadata.json
    tabular/{tenant}/files/{sha256}.{skops|json|ubj}          model files, by content

A version's metadata is written once, exclusively (two uploads cannot take one version), after its file. Deleting
model files keeps metadata and marks it `file_deleted_at`. Reads are memoised for a few seconds; this process's
own writes clear the memo, other replicas see them within `READ_TTL_S`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ministudio_serve.errors import ApiError
from ministudio_serve.tabular import formats
from ministudio_serve.tabular.schema import Feature
from ministudio_serve.tabular.store import BlobStore, KeyExists

READ_TTL_S = 2.0
_AUTO_VERSION = re.compile(r"^v(\d+)$")
T = TypeVar("T")


class UploadMeta(BaseModel):
    """What the uploader says about a version; the server adds the rest."""

    features: list[Feature] | None = Field(None, description="in the order the model expects; else from the file")
    target_names: list[str] | None = Field(None, description="class labels, by class index")
    metrics: dict[str, float] = Field(default_factory=dict)
    description: str | None = Field(None, max_length=2000)


class VersionMeta(UploadMeta):
    model_type: str
    version: str
    format: formats.ModelFormat
    framework: str
    features: list[Feature]  # always known once registered
    n_features: int
    created_at: str
    file_key: str
    file_sha256: str
    file_bytes: int
    file_deleted_at: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Versions:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._memo: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    # reads

    def meta(self, tenant: str, model_type: str, version: str) -> VersionMeta | None:
        raw = self._read(f"{_types(tenant)}{model_type}/{version}/metadata.json")
        return VersionMeta.model_validate(raw) if raw is not None else None

    def versions(self, tenant: str, model_type: str) -> list[VersionMeta]:
        keys = self._memoised(
            f"ls:{_types(tenant)}{model_type}/", lambda: self.store.list(f"{_types(tenant)}{model_type}/")
        )
        found = [self.meta(tenant, model_type, k.split("/")[-2]) for k in keys if k.endswith("/metadata.json")]
        return sorted((m for m in found if m is not None), key=_version_order)

    def model_types(self, tenant: str) -> list[str]:
        keys = self._memoised(f"ls:{_types(tenant)}", lambda: self.store.list(_types(tenant)))
        return sorted({k[len(_types(tenant)) :].split("/")[0] for k in keys if k.endswith("/metadata.json")})

    def active_version(self, tenant: str, model_type: str) -> str | None:
        """The type's chosen version, else its latest."""
        pointer = self._read(f"{_types(tenant)}{model_type}/active.json")
        if pointer is not None:
            return str(pointer["version"])
        versions = self.versions(tenant, model_type)
        return versions[-1].version if versions else None

    def active_model(self, tenant: str) -> dict[str, str] | None:
        pointer = self._read(f"tabular/{tenant}/active.json")
        return {"model_type": str(pointer["model_type"]), "version": str(pointer["version"])} if pointer else None

    def resolve(self, tenant: str, model_type: str | None = None, version: str | None = None) -> VersionMeta:
        """The version a predict route names: the active model, a type's active version, or an exact version."""
        if model_type is None:
            active = self.active_model(tenant)
            if active is None:
                raise ApiError(
                    404,
                    f"tenant {tenant!r} has no active model: register a version with activate=true "
                    "or PUT /models/active",
                    code="no_active_model",
                )
            model_type, version = active["model_type"], active["version"]
        if version is None or version == "active":
            version = self.active_version(tenant, model_type)
        elif version == "latest":
            version = self._latest(tenant, model_type)
        if version is None:
            raise self._unknown_type(tenant, model_type)
        meta = self.meta(tenant, model_type, version)
        if meta is None:
            if model_type not in self.model_types(tenant):
                raise self._unknown_type(tenant, model_type)
            known = ", ".join(v.version for v in self.versions(tenant, model_type))
            raise ApiError(
                404, f"model type {model_type!r} has no version {version!r} (known: {known})", code="version_not_found"
            )
        return meta

    def model_file(self, tenant: str, meta: VersionMeta) -> bytes:
        data = self.store.get(meta.file_key) if meta.file_deleted_at is None else None
        if data is None:
            raise ApiError(
                410,
                f"the file of {meta.model_type} {meta.version} was deleted (its metadata is kept): "
                "register a new version",
                code="model_file_deleted",
            )
        if hashlib.sha256(data).hexdigest() != meta.file_sha256:
            raise ApiError(500, "stored model file does not match its recorded digest", code="model_file_corrupt")
        return data

    # writes

    def register(
        self, tenant: str, model_type: str, data: bytes, upload: UploadMeta, version: str | None, activate: bool
    ) -> VersionMeta:
        fmt = formats.detect(data)
        loaded = formats.load(data, fmt)  # skops files pass the allow-list check inside, before skops loads them
        features = upload.features or [Feature(name=n) for n in formats.feature_names_of(loaded) or []]
        if not features:
            raise formats.InvalidModel("metadata.features is required: the file does not name its features")
        if len(features) != loaded.n_features:
            raise formats.InvalidModel(
                f"metadata.features lists {len(features)} features; the model takes {loaded.n_features}"
            )
        sha = hashlib.sha256(data).hexdigest()
        file_key = f"tabular/{tenant}/files/{sha}.{fmt.extension}"
        self.store.put(file_key, data)
        fields = {**upload.model_dump(), "features": features}
        for attempt in range(20):
            chosen = version or self._next_version(tenant, model_type, attempt)
            meta = VersionMeta(
                **fields,
                model_type=model_type,
                version=chosen,
                format=fmt,
                framework=fmt.framework,
                n_features=loaded.n_features,
                created_at=_now(),
                file_key=file_key,
                file_sha256=sha,
                file_bytes=len(data),
            )
            try:
                self.store.put(_meta_key(tenant, model_type, chosen), _dump(meta), exclusive=True)
            except KeyExists:
                if version is not None:
                    raise ApiError(
                        409, f"{model_type} {version} already exists: versions are immutable", code="version_exists"
                    ) from None
                continue
            self._forget()
            if activate:
                self.set_active(tenant, model_type, chosen)
            return meta
        raise ApiError(409, "could not pick a free version number; retry", code="version_conflict")

    def set_active(self, tenant: str, model_type: str, version: str | None, tenant_wide: bool = True) -> dict[str, str]:
        meta = self.resolve(tenant, model_type, version)
        self.store.put(f"{_types(tenant)}{model_type}/active.json", json.dumps({"version": meta.version}).encode())
        pointer = {"model_type": model_type, "version": meta.version}
        if tenant_wide:
            self.store.put(f"tabular/{tenant}/active.json", json.dumps(pointer).encode())
        self._forget()
        return pointer

    def delete_files(self, tenant: str) -> dict[str, int]:
        """Delete every model file of the tenant; keep (and mark) every version's metadata."""
        files = self.store.list(f"tabular/{tenant}/files/")
        for key in files:
            self.store.delete(key)
        marked = 0
        when = _now()
        for model_type in self.model_types(tenant):
            for meta in self.versions(tenant, model_type):
                if meta.file_deleted_at is None:
                    meta.file_deleted_at = when
                    self.store.put(_meta_key(tenant, model_type, meta.version), _dump(meta))
                    marked += 1
        self._forget()
        return {"files_deleted": len(files), "versions_marked": marked}

    # helpers

    def _latest(self, tenant: str, model_type: str) -> str | None:
        versions = self.versions(tenant, model_type)
        return versions[-1].version if versions else None

    def _next_version(self, tenant: str, model_type: str, attempt: int) -> str:
        self._forget()
        numbers = [int(m.group(1)) for v in self.versions(tenant, model_type) if (m := _AUTO_VERSION.match(v.version))]
        return f"v{max(numbers, default=0) + 1 + attempt}"

    def _unknown_type(self, tenant: str, model_type: str) -> ApiError:
        known = ", ".join(self.model_types(tenant)) or "none registered"
        return ApiError(404, f"unknown model type {model_type!r} (known: {known})", code="model_not_found")

    def _read(self, key: str) -> Any:
        def load() -> Any:
            raw = self.store.get(key)
            return json.loads(raw) if raw is not None else None

        return self._memoised(key, load)

    def _memoised(self, key: str, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = compute()
        with self._lock:
            self._memo[key] = (now + READ_TTL_S, value)
        return value

    def _forget(self) -> None:
        with self._lock:
            self._memo.clear()


def _types(tenant: str) -> str:
    return f"tabular/{tenant}/models/"


def _meta_key(tenant: str, model_type: str, version: str) -> str:
    return f"{_types(tenant)}{model_type}/{version}/metadata.json"


def _dump(meta: VersionMeta) -> bytes:
    return meta.model_dump_json(indent=2).encode()


def _version_order(meta: VersionMeta) -> tuple[str, int, str]:
    m = _AUTO_VERSION.match(meta.version)
    return (meta.created_at, int(m.group(1)) if m else 0, meta.version)
