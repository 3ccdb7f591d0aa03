"""The server's one settings object: every option comes from the CLI, else the environment, else a default.

Environment names follow the seeds (002: API_KEY, API_HOST, API_PORT, LOG_LEVEL; 003: MAX_BATCH_SIZE,
BATCH_TIMEOUT_MS). The generic `PORT` is never read: a child process of `make run` must not inherit its parent's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class ServeSettings(BaseSettings):
    # Case-sensitive, so the lower-case names (used by CLI flags) never match generic variables such as PORT or HOST.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True, case_sensitive=True)

    model: str = Field(DEFAULT_MODEL, validation_alias=_env("model", "MODEL_REF", "MODEL_NAME"))
    served_model_name: str | None = Field(None, validation_alias=_env("served_model_name", "SERVED_MODEL_NAME"))
    model_version: str = Field("1", validation_alias=_env("model_version", "MODEL_VERSION"))
    engine: Literal["transformers", "vllm"] = Field("transformers", validation_alias=_env("engine", "ENGINE"))
    profile: Literal["llm", "tabular"] = Field("llm", validation_alias=_env("profile", "SERVE_PROFILE"))
    host: str = Field("127.0.0.1", validation_alias=_env("host", "API_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("port", "API_PORT"))
    api_key: str | None = Field(None, validation_alias=_env("api_key", "API_KEY"))
    log_level: str = Field("INFO", validation_alias=_env("log_level", "LOG_LEVEL"))

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

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

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
