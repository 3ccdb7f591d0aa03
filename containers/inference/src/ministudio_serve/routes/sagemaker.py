"""SageMaker's /invocations: the body is an OpenAI chat or completion request.

The adapter comes from the TargetModel header (multi-model endpoints), the adapter header SageMaker inference
components use, or a `TargetModel`/`adapter` field; otherwise the body's `model`, else the base model.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ministudio_serve.deps import GenerationDep, RequestIdDep, StateDep
from ministudio_serve.errors import ApiError
from ministudio_serve.routes.openai import chat_completions, completions
from ministudio_serve.schemas.openai import ChatCompletionRequest, CompletionRequest

router = APIRouter(tags=["sagemaker"])
ADAPTER_HEADERS = ("x-amzn-sagemaker-target-model", "x-amzn-sagemaker-adapter-identifier")


def _target(request: Request, body: dict[str, Any], default: str) -> str:
    for header in ADAPTER_HEADERS:
        if request.headers.get(header):
            return request.headers[header]
    for field in ("TargetModel", "adapter"):
        value = body.pop(field, None)
        if isinstance(value, str) and value:
            return value
    model = body.get("model")
    return model if isinstance(model, str) and model else default


@router.post("/invocations", response_model=None)
async def invocations(request: Request, service: GenerationDep, state: StateDep, rid: RequestIdDep) -> Any:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object: an OpenAI chat or completion request")
    body["model"] = _target(request, body, state.settings.model_name)
    try:
        if "messages" in body:
            return await chat_completions(ChatCompletionRequest.model_validate(body), service, rid)
        if "prompt" in body:
            return await completions(CompletionRequest.model_validate(body), service, rid)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(400, f"{field}: {first.get('msg')}", param=field or None) from exc
    raise ApiError(400, "body needs `messages` (chat) or `prompt` (completion)")
