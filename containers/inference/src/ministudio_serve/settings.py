"""The server's one settings object: every option comes from the CLI, else the environment, else a default.

Environment names follow the seeds (002: API_KEY, API_HOST, API_PORT, API_WORKERS, LOG_LEVEL, DEBUG, MODEL_NAME,
MLFLOW_TRACKING_URI; 003: MAX_BATCH_SIZE, BATCH_TIMEOUT_MS, DEFAULT_MODEL). The generic `PORT` is never read: a child
process of `make run` must not inherit its parent's.

Seed 002's `serving_config.yaml` (SERVING_CONFIG, `--config`) sits between the environment and the defaults: CLI flags
> environment > `.env` (in the working directory) > the YAML file > defaults. Its keys are the seed's
(SERVING_CONFIG_KEYS); any other key is an error.

CUDA_VISIBLE_DEVICES (seed 002's "GPU device ID") is not a setting: CUDA itself reads it when torch first touches the
GPU, so the server uses only the devices it names (unset: all; `cuda`/`cuda:0` is the first one it names). /info
reports them (devices.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REGISTRY_DEFAULT_MODEL = "custom-llm"  # seed 002's MODEL_NAME default


# Seed 002's serving_config.yaml: each of its keys and the setting it fills.
SERVING_CONFIG_KEYS: dict[str, str] = {
    "api.host": "host",
    "api.port": "port",
    "api.workers": "api_workers",
    "model.max_tokens": "max_model_len",  # the context window in tokens (the seed's 2048-token prompts)
    "model.default_max_length": "default_max_tokens",  # tokens generated when a request names no length
    "model.batch_size": "max_batch_size",
    "mlflow.tracking_uri": "mlflow_tracking_uri",
    "mlflow.model_name": "model",
    "mlflow.model_stage": "model_stage",
}


class ServingConfigError(ValueError):
    """A serving config file that cannot be read, is not the seed's shape, or has a key the server does not know."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def read_serving_config(path: Path) -> dict[str, Any]:
    """The settings a serving_config.yaml gives, by field name; a ServingConfigError names what is wrong."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ServingConfigError(f"cannot read the serving config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ServingConfigError(f"serving config {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServingConfigError(f"serving config {path}: expected a mapping of sections (api, model, mlflow)")
    known = ", ".join(SERVING_CONFIG_KEYS)
    sections = {key.split(".")[0] for key in SERVING_CONFIG_KEYS}
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section not in sections:
            raise ServingConfigError(f"serving config {path}: unknown key `{section}` (known keys: {known})")
        if not isinstance(body, dict):
            raise ServingConfigError(f"serving config {path}: `{section}` must be a mapping")
        for key, value in body.items():
            field = SERVING_CONFIG_KEYS.get(f"{section}.{key}")
            if field is None:
                raise ServingConfigError(f"serving config {path}: unknown key `{section}.{key}` (known keys: {known})")
            values[field] = value
    return values


class _ServingConfigSource(PydanticBaseSettingsSource):
    """serving_config.yaml, below the flags and the environment: a field either of them set is left alone."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file

    def __call__(self) -> dict[str, Any]:
        state = self.current_state  # what the flags (init kwargs) and the environment gave, under their aliases
        path = state.get("serving_config") or state.get("SERVING_CONFIG")
        if not path:
            return {}
        values = {}
        for name, value in read_serving_config(Path(path)).items():
            choices = getattr(self.settings_cls.model_fields[name].validation_alias, "choices", [name])
            if not any(str(alias) in state for alias in choices):
                values[name] = value
        return values


class ServeSettings(BaseSettings):
    # Case-sensitive, so the lower-case names (used by CLI flags) never match generic variables such as PORT or HOST.
    # `.env` in the working directory is read too (below the environment, above serving_config.yaml).
    model_config = SettingsConfigDict(
        env_prefix="",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
        env_file=".env",
        env_file_encoding="utf-8",
    )

    model: str = Field(DEFAULT_MODEL, validation_alias=_env("model", "MODEL_REF", "MODEL_NAME"))
    served_model_name: str | None = Field(None, validation_alias=_env("served_model_name", "SERVED_MODEL_NAME"))
    model_version: str = Field("1", validation_alias=_env("model_version", "MODEL_VERSION"))
    engine: Literal["transformers", "vllm"] = Field("transformers", validation_alias=_env("engine", "ENGINE"))
    profile: Literal["llm", "tabular"] = Field("llm", validation_alias=_env("profile", "SERVE_PROFILE"))
    host: str = Field("127.0.0.1", validation_alias=_env("host", "API_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("port", "API_PORT"))
    api_key: str | None = Field(None, validation_alias=_env("api_key", "API_KEY"))
    # Seed 002 requires API_KEY: without one the server refuses to start unless this says it is a local dev server.
    allow_no_api_key: bool = Field(False, validation_alias=_env("allow_no_api_key", "ALLOW_NO_API_KEY"))
    log_level: str = Field("INFO", validation_alias=_env("log_level", "LOG_LEVEL"))
    # Seed 003's structured logs: `json` writes one JSON object a line (the images set it); `text` for a terminal.
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("log_format", "LOG_FORMAT"))

    device: str = Field("auto", validation_alias=_env("device", "DEVICE"))
    dtype: str = Field("auto", validation_alias=_env("dtype", "DTYPE"))
    torch_threads: int = Field(0, ge=0, validation_alias=_env("torch_threads", "TORCH_THREADS"))
    max_batch_size: int = Field(8, ge=1, le=256, validation_alias=_env("max_batch_size", "MAX_BATCH_SIZE"))
    batch_timeout_ms: float = Field(
        100.0, ge=0, le=10_000, validation_alias=_env("batch_timeout_ms", "BATCH_TIMEOUT_MS")
    )
    max_model_len: int | None = Field(None, ge=16, validation_alias=_env("max_model_len", "MAX_MODEL_LEN"))
    prefix_cache_tokens: int = Field(2048, ge=0, validation_alias=_env("prefix_cache_tokens", "PREFIX_CACHE_TOKENS"))
    default_max_tokens: int = Field(256, ge=1, validation_alias=_env("default_max_tokens", "DEFAULT_MAX_TOKENS"))
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, validation_alias=_env("gpu_memory_utilization"))

    max_loras: int = Field(8, ge=1, le=256, validation_alias=_env("max_loras", "MAX_LORAS"))
    max_lora_rank: int = Field(16, ge=1, le=512, validation_alias=_env("max_lora_rank", "MAX_LORA_RANK"))
    adapter_source: str | None = Field(None, validation_alias=_env("adapter_source", "ADAPTER_SOURCE"))
    adapter_cache: Path | None = Field(None, validation_alias=_env("adapter_cache", "ADAPTER_CACHE"))
    lora_modules: list[str] = Field(default_factory=list, validation_alias=_env("lora_modules", "LORA_MODULES"))

    # Unset: a file per port under the user's cache, so servers started side by side never share one log and
    # nothing lands in the working directory.
    request_log: Path | None = Field(None, validation_alias=_env("request_log", "REQUEST_LOG_PATH"))
    max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias=_env("max_body_bytes", "MAX_BODY_BYTES"))
    cors_origins: list[str] = Field(default_factory=list, validation_alias=_env("cors_origins", "CORS_ORIGINS"))

    # Seed 003's task models. "builtin" is the offline default (summarizer and generator on the LLM above, VADER
    # sentiment, the packaged all-MiniLM-L6-v2); a local directory or hub id (facebook/bart-large-cnn,
    # cardiffnlp/twitter-roberta-base-sentiment-latest, gpt2: the seed's) loads that model with transformers.
    default_task_model: str = Field("summarizer", validation_alias=_env("default_task_model", "DEFAULT_MODEL"))
    summarizer_model: str = Field("builtin", validation_alias=_env("summarizer_model", "SUMMARIZER_MODEL"))
    sentiment_model: str = Field("builtin", validation_alias=_env("sentiment_model", "SENTIMENT_MODEL"))
    generator_model: str = Field("builtin", validation_alias=_env("generator_model", "GENERATOR_MODEL"))
    embedding_model: str = Field("builtin", validation_alias=_env("embedding_model", "EMBEDDING_MODEL"))
    # More versions of a task model, each `name:version=path` (a folder or hub id), e.g. `summarizer:v2=/models/v2`;
    # the newest version answers a request that names none (POST /models/{name}/versions adds one at run time).
    task_model_versions: list[str] = Field(
        default_factory=list, validation_alias=_env("task_model_versions", "TASK_MODEL_VERSIONS")
    )
    # False: each task model loads on its first request instead of at startup (tests that never use them).
    preload_task_models: bool = Field(True, validation_alias=_env("preload_task_models", "PRELOAD_TASK_MODELS"))

    # Seed 004's classical models (profile `tabular`): where versions live (s3://bucket[/prefix] or a directory;
    # unset: the artifacts bucket when one is named, else a directory under the user's cache), and the prediction
    # cache (no REDIS_URL: no cache).
    tabular_store: str | None = Field(None, validation_alias=_env("tabular_store", "TABULAR_STORE"))
    bucket: str | None = Field(None, validation_alias=_env("bucket", "ARTIFACTS_BUCKET_NAME", "AWS_BUCKET_NAME"))
    redis_url: str | None = Field(None, validation_alias=_env("redis_url", "REDIS_URL"))
    prediction_cache_ttl_s: int = Field(
        3600, ge=0, validation_alias=_env("prediction_cache_ttl_s", "PREDICTION_CACHE_TTL_S")
    )

    @property
    def tabular_store_location(self) -> str:
        if self.tabular_store:
            return self.tabular_store
        if self.bucket:
            return f"s3://{self.bucket}"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return str(cache / "ministudio" / f"serve-{self.port}" / "tabular")

    # Seed 002's model registry (registry.py): with a tracking URI, MODEL_NAME (or --model) names a registered model,
    # `custom-llm` unless given, served as its base model plus its LoRA adapter; the version is picked by alias when
    # one is set, else by stage (`latest`: the newest version). Without it, the catalogue serves as before.
    mlflow_tracking_uri: str | None = Field(None, validation_alias=_env("mlflow_tracking_uri", "MLFLOW_TRACKING_URI"))
    model_stage: str = Field("Production", validation_alias=_env("model_stage", "MODEL_STAGE"))
    model_alias: str | None = Field(None, validation_alias=_env("model_alias", "MODEL_ALIAS"))
    # Seed 002's API_WORKERS (each worker process loads its own model) and DEBUG (500 bodies name the exception).
    api_workers: int = Field(1, ge=1, le=64, validation_alias=_env("api_workers", "API_WORKERS"))
    debug: bool = Field(False, validation_alias=_env("debug", "DEBUG"))

    # Seed 002's serving_config.yaml (module docstring); unset: none is read.
    serving_config: Path | None = Field(None, validation_alias=_env("serving_config", "SERVING_CONFIG"))
    # Seed 002's Trusted Hosts: the Host header must match one of these (`*`: any; `*.example.com`: its subdomains),
    # else 400. The probes (/health, /ready, /ping) answer whatever the Host: kubelets and SageMaker send the pod's IP.
    trusted_hosts: list[str] = Field(
        default_factory=lambda: ["*"], validation_alias=_env("trusted_hosts", "TRUSTED_HOSTS")
    )
    # Seed 002's `api.log`: unset, logs go to stderr only; set, to this file as well (same format).
    log_file: Path | None = Field(None, validation_alias=_env("log_file", "LOG_FILE"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags (init kwargs) > environment > .env > serving_config.yaml > defaults.
        return init_settings, env_settings, dotenv_settings, file_secret_settings, _ServingConfigSource(settings_cls)

    @field_validator("trusted_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            rest = pattern[2:] if pattern.startswith("*.") else pattern
            if not pattern or (pattern != "*" and "*" in rest):
                raise ValueError(f"trusted host {pattern!r}: `*` is allowed alone or as a leading `*.` only")
        return [pattern.lower() for pattern in value]

    @field_validator("task_model_versions")
    @classmethod
    def _version_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.fullmatch(r"[a-z]+:v[0-9]{1,6}=.+", entry.strip()):
                raise ValueError(f"task model version {entry!r}: expected name:version=path, e.g. summarizer:v2=/m/v2")
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _registry_model_name(self) -> ServeSettings:
        if self.mlflow_tracking_uri and "model" not in self.model_fields_set:
            self.model = REGISTRY_DEFAULT_MODEL
        return self

    @property
    def request_log_path(self) -> Path:
        if self.request_log is not None:
            return self.request_log
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "ministudio" / f"serve-{self.port}" / "requests.sqlite"

    @property
    def model_name(self) -> str:
        """The id clients send as `model`: the served name, else the model reference itself."""
        return self.served_model_name or self.model
