"""`ministudio-serve`: flags override the environment, which overrides defaults (settings.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ministudio_serve.settings import ServeSettings

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
]


def parse(argv: list[str] | None = None) -> ServeSettings:
    parser = argparse.ArgumentParser(prog="ministudio-serve", description=__doc__)
    for flag, options in _FLAGS:
        parser.add_argument(flag, default=None, **options)
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:  # SageMaker runs `docker run IMAGE serve`
        args = args[1:]
    given = {k: v for k, v in vars(parser.parse_args(args)).items() if v is not None}
    return ServeSettings(**given)


def main(argv: list[str] | None = None) -> None:
    settings = parse(argv)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import uvicorn

    from ministudio_serve.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
