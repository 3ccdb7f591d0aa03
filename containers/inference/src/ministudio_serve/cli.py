"""`ministudio-serve`: flags override the environment, then serving_config.yaml, then defaults (settings.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ministudio_serve.logs import formatter
from ministudio_serve.settings import ServeSettings, ServingConfigError

log = logging.getLogger("ministudio_serve")
NO_KEY_MESSAGE = (
    "ministudio-serve: API_KEY is not set. Seed 002's server requires a key: set API_KEY (or --api-key), "
    "or pass --insecure-dev (ALLOW_NO_API_KEY=1) to serve without authentication for local development only."
)
_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--model", {"help": "catalogue name, model dir, .gguf, s3:// prefix or hub id"}),
    ("--served-model-name", {}),
    ("--model-version", {}),
    ("--engine", {"choices": ["transformers", "vllm"]}),
    ("--profile", {"choices": ["llm", "tabular"]}),
    ("--host", {}),
    ("--port", {"type": int}),
    ("--api-key", {}),
    ("--log-level", {}),
    ("--log-format", {"choices": ["text", "json"], "help": "json: one JSON object a line (seed 003)"}),
    (
        "--insecure-dev",
        {
            "dest": "allow_no_api_key",
            "action": "store_const",
            "const": True,
            "help": "serve without API_KEY (no authentication): local development only",
        },
    ),
    ("--device", {"help": "auto, cpu, cuda, cuda:N (transformers engine)"}),
    ("--dtype", {"help": "auto, float32, bfloat16, float16"}),
    ("--torch-threads", {"type": int}),
    ("--max-batch-size", {"type": int}),
    ("--batch-timeout-ms", {"type": float}),
    ("--max-model-len", {"type": int}),
    ("--default-max-tokens", {"type": int}),
    ("--prefix-cache-tokens", {"type": int, "help": "KV of shared prompt prefixes kept (tokens); 0 disables"}),
    ("--gpu-memory-utilization", {"type": float}),
    ("--max-loras", {"type": int}),
    ("--max-lora-rank", {"type": int}),
    ("--adapter-source", {"help": "template such as s3://bucket/artifacts/{tenant}/{job_id}/adapter/"}),
    ("--adapter-cache", {}),
    ("--lora-modules", {"nargs": "*", "help": "name=path adapters to load at start"}),
    ("--request-log", {"help": "SQLite file of the request log"}),
    ("--max-body-bytes", {"type": int}),
    ("--cors-origins", {"nargs": "*"}),
    ("--task-model-versions", {"nargs": "*", "help": "more task model versions: name:version=path"}),
    ("--tabular-store", {"help": "profile tabular: s3://bucket[/prefix] or a directory for model versions"}),
    ("--redis-url", {"help": "profile tabular: Redis for the prediction cache (unset: no cache)"}),
    ("--mlflow-tracking-uri", {"help": "serve --model (default custom-llm) from this MLflow registry"}),
    ("--model-stage", {"help": "registry stage to serve (default Production; `latest`: the newest version)"}),
    ("--model-alias", {"help": "registry alias to serve (wins over --model-stage)"}),
    ("--api-workers", {"type": int, "help": "worker processes, each with its own model (default 1)"}),
    ("--debug", {"action": "store_const", "const": True, "help": "500 bodies name the exception"}),
    ("--config", {"dest": "serving_config", "help": "seed 002's serving_config.yaml (flags and env win over it)"}),
    ("--trusted-hosts", {"nargs": "*", "help": "Host header patterns to answer (default *: any)"}),
    ("--log-file", {"help": "also write the logs to this file (seed 002's api.log)"}),
]
# API_WORKERS > 1: uvicorn starts each worker from an import string, so the settings travel in this variable.
WORKER_SETTINGS_ENV = "MINISTUDIO_SERVE_SETTINGS"
SAGEMAKER_PORT = 8080


def parse(argv: list[str] | None = None) -> ServeSettings:
    parser = argparse.ArgumentParser(prog="ministudio-serve", description=__doc__)
    for flag, options in _FLAGS:
        parser.add_argument(flag, default=None, **options)
    args = list(sys.argv[1:] if argv is None else argv)
    sagemaker = args[:1] == ["serve"]
    if sagemaker:  # SageMaker runs `docker run IMAGE serve`
        args = args[1:]
    given = {k: v for k, v in vars(parser.parse_args(args)).items() if v is not None}
    if sagemaker and "port" not in given:
        given["port"] = SAGEMAKER_PORT  # SageMaker only ever calls 8080, whatever API_PORT the image sets
    try:
        return ServeSettings(**given)
    except ServingConfigError as exc:
        parser.error(str(exc))  # exits 2 with the message (which names the bad key)


def configure_logging(settings: ServeSettings) -> None:
    """Root logging at LOG_LEVEL to stderr and, with LOG_FILE, to that file too, in one format. uvicorn runs with
    `log_config=None`, so its startup and access lines (`"GET /health HTTP/1.1" 200`) reach these handlers."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter(settings.log_format))
    logging.basicConfig(level=settings.log_level, handlers=handlers, force=True)


def check_api_key(settings: ServeSettings) -> None:
    """Seed 002: a key is required. Without one, exit non-zero naming API_KEY, unless --insecure-dev says otherwise."""
    if settings.api_key:
        return
    if not settings.allow_no_api_key:
        print(NO_KEY_MESSAGE, file=sys.stderr)
        raise SystemExit(2)
    log.warning(
        "INSECURE: no API_KEY and --insecure-dev/ALLOW_NO_API_KEY=1: every route answers without authentication. "
        "Local development only; never expose this server."
    )


def worker_app() -> Any:
    """The app of one of API_WORKERS processes, from the settings main() resolved (flags included)."""
    from ministudio_serve.app import create_app

    settings = ServeSettings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
    configure_logging(settings)
    return create_app(settings)


def main(argv: list[str] | None = None) -> None:
    settings = parse(argv)
    configure_logging(settings)
    check_api_key(settings)
    import uvicorn

    from ministudio_serve.app import create_app

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's loggers propagate to the handlers above (stderr, LOG_FILE)
    }
    if settings.api_workers > 1:
        os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run("ministudio_serve.cli:worker_app", factory=True, workers=settings.api_workers, **options)
        return
    uvicorn.run(create_app(settings), **options)


if __name__ == "__main__":
    main()
