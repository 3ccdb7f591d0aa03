"""Dependencies as types: routes read like their contract, tests swap implementations with dependency_overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ministudio_serve.errors import ApiError
from ministudio_serve.services.adapters import AdapterService
from ministudio_serve.services.generation import GenerationService
from ministudio_serve.services.task_routing import TaskRouter
from ministudio_serve.state import ServerState


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def _not_loaded(state: ServerState) -> ApiError:
    why = f" ({state.load_error})" if state.load_error else ", still loading"
    return ApiError(503, f"Model not loaded or service unhealthy{why}", code="model_not_loaded")


def get_generation(state: StateDep) -> GenerationService:
    if state.generation is None:
        raise _not_loaded(state)
    return state.generation


def get_adapters(state: StateDep) -> AdapterService:
    if state.adapters is None:
        raise _not_loaded(state)
    return state.adapters


def get_tasks(state: StateDep) -> TaskRouter:
    if state.tasks is None:
        raise ApiError(404, "task models are served by the llm profile", code="model_not_found")
    return state.tasks


def request_id(request: Request) -> str:
    return str(request.state.request_id)


GenerationDep = Annotated[GenerationService, Depends(get_generation)]
AdaptersDep = Annotated[AdapterService, Depends(get_adapters)]
RequestIdDep = Annotated[str, Depends(request_id)]
TasksDep = Annotated[TaskRouter, Depends(get_tasks)]
