"""Predict with a tenant's classical models: resolve the version, validate the input against its schema, answer from
the cache or the (memoised) loaded model, and log every prediction to the server's request log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ministudio_serve.errors import ApiError
from ministudio_serve.middleware import current_user
from ministudio_serve.services.request_log import LogEntry, RequestLog
from ministudio_serve.settings import ServeSettings
from ministudio_serve.tabular import formats
from ministudio_serve.tabular.cache import PredictionCache, prediction_key
from ministudio_serve.tabular.schema import InputInvalid, canonical_digest, validate_input
from ministudio_serve.tabular.store import build_store
from ministudio_serve.tabular.versions import UploadMeta, VersionMeta, Versions

log = logging.getLogger(__name__)

MAX_LOADED_MODELS = 32


@dataclass(frozen=True)
class PredictOutcome:
    meta: VersionMeta
    body: dict[str, Any]  # prediction, label, probabilities
    cached: bool
    latency_ms: float


class TabularService:
    def __init__(self, versions: Versions, cache: PredictionCache, request_log: RequestLog) -> None:
        self.versions = versions
        self.cache = cache
        self.request_log = request_log
        self._loaded: OrderedDict[str, formats.LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.on_cache: Callable[[bool], None] = lambda hit: None  # the server's cache hit/miss counter

    @classmethod
    def from_settings(cls, settings: ServeSettings, request_log: RequestLog) -> TabularService:
        versions = Versions(build_store(settings.tabular_store_location))
        return cls(versions, PredictionCache(settings.redis_url, settings.prediction_cache_ttl_s), request_log)

    def predict(
        self, tenant: str, model_type: str | None, version: str | None, input_data: dict[str, Any], route: str, rid: str
    ) -> PredictOutcome:
        started = time.perf_counter()
        meta: VersionMeta | None = None
        try:
            meta = self.versions.resolve(tenant, model_type, version)
            if meta.file_deleted_at is not None:
                self.versions.model_file(tenant, meta)  # raises 410 with the reason
            values = validate_input(f"{meta.model_type}_{meta.version}", meta.features, input_data)
            key = prediction_key(tenant, meta.model_type, meta.version, meta.file_sha256, canonical_digest(values))
            body = self.cache.get(key)
            cached = body is not None
            self.on_cache(cached)
            if body is None:
                body = self._predict(tenant, meta, values)
                self.cache.set(key, body)
        except (ApiError, InputInvalid) as exc:
            status = "validation_error" if isinstance(exc, InputInvalid) else (exc.code or "error")
            self._log(tenant, meta, route, rid, input_data, None, status, started, (model_type, version))
            raise
        outcome = PredictOutcome(meta, body, cached, round((time.perf_counter() - started) * 1000, 3))
        self._log(tenant, meta, route, rid, input_data, {**body, "cached": cached}, "success", started)
        return outcome

    def register(
        self, tenant: str, model_type: str, data: bytes, upload: UploadMeta, version: str | None, activate: bool
    ) -> VersionMeta:
        try:
            return self.versions.register(tenant, model_type, data, upload, version, activate)
        except formats.UnsafeModel as exc:
            status = {"untrusted_types": 422, "invalid_skops": 400}.get(exc.code, 415)
            raise ApiError(status, str(exc), code=exc.code, param="file") from exc
        except formats.InvalidModel as exc:
            raise ApiError(400, str(exc), code="invalid_model", param="file") from exc

    def delete_model_files(self, tenant: str) -> dict[str, int]:
        result = self.versions.delete_files(tenant)
        with self._lock:
            for key in [k for k in self._loaded if k.startswith(f"{tenant}/")]:
                del self._loaded[key]
        result["cached_predictions_dropped"] = self.cache.drop_tenant(tenant)
        return result

    def _predict(self, tenant: str, meta: VersionMeta, values: list[float]) -> dict[str, Any]:
        model = self._model(tenant, meta)
        result = model.predict(values)
        label = None
        names = meta.target_names
        if names and isinstance(result.value, int) and 0 <= result.value < len(names):
            label = names[result.value]
        return {"prediction": result.value, "label": label, "probabilities": result.probabilities}

    def _model(self, tenant: str, meta: VersionMeta) -> formats.LoadedModel:
        key = f"{tenant}/{meta.model_type}/{meta.version}/{meta.file_sha256}"
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        data = self.versions.model_file(tenant, meta)
        try:
            model = formats.load(data, meta.format)  # the same safety checks as at upload: the store is not trusted
        except (formats.UnsafeModel, formats.InvalidModel) as exc:
            log.error("refusing stored model %s: %s", key, exc)
            raise ApiError(500, f"stored model {meta.model_type} {meta.version} could not be loaded safely") from exc
        with self._lock:
            self._loaded[key] = model
            while len(self._loaded) > MAX_LOADED_MODELS:
                self._loaded.popitem(last=False)
        return model

    def _log(
        self,
        tenant: str,
        meta: VersionMeta | None,
        route: str,
        rid: str,
        input_data: dict[str, Any],
        output: dict[str, Any] | None,
        status: str,
        started: float,
        requested: tuple[str | None, str | None] = (None, None),
    ) -> None:
        model = (
            f"{meta.model_type}:{meta.version}" if meta else f"{requested[0] or 'active'}:{requested[1] or 'active'}"
        )
        self.request_log.add(
            LogEntry(
                request_id=rid,
                route=route,
                model=model,
                adapter=None,
                prompt_tokens=0,
                completion_tokens=0,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                status=status,
                user=current_user.get(),
                tenant=tenant,
                input_data=json.dumps(input_data, separators=(",", ":"), default=str)[:8192],
                output=json.dumps(output, separators=(",", ":")) if output is not None else None,
                timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            )
        )
