"""create_app: middleware, error bodies, and the routers of the chosen profile around one ServerState.

The model loads in the background after startup, so liveness (`/health`) answers at once and readiness (`/ready`,
SageMaker's `/ping`) turns 200 only when generation can run; generation routes answer 503 until then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ministudio_serve import errors
from ministudio_serve.engines.base import Engine
from ministudio_serve.metrics import Metrics
from ministudio_serve.middleware import Gatekeeper
from ministudio_serve.routes import adapters, embeddings, health, openai, sagemaker, seed002, seed003, seed004
from ministudio_serve.routes import tabular as tabular_routes
from ministudio_serve.sagemaker_routes import SageMakerRoutes
from ministudio_serve.services.request_log import RequestLog
from ministudio_serve.services.task_routing import TaskRouter
from ministudio_serve.settings import ServeSettings
from ministudio_serve.state import ServerState

log = logging.getLogger(__name__)

# A profile is the routers it serves and whether it needs the LLM engine. The tabular profile (seed 004's classical
# models) adds its routers in its own issue.
PROFILES: dict[str, tuple[list[APIRouter], bool]] = {
    "llm": (
        [
            health.router,
            openai.router,
            adapters.router,
            sagemaker.router,
            seed002.router,
            seed003.router,
            embeddings.router,
            seed004.router,
        ],
        True,
    ),
    # Seed 004's classical models (routes/tabular.py, tabular/): its own probes, /metrics, no LLM engine.
    "tabular": ([tabular_routes.router, tabular_routes.metrics_router], False),
}


async def _load(state: ServerState) -> None:
    from ministudio_serve.engines.factory import build_engine

    try:
        registered = None
        if state.settings.mlflow_tracking_uri:  # seed 002: the model comes from the MLflow registry
            from ministudio_serve import mlflow_registry

            registered = await asyncio.to_thread(mlflow_registry.fetch, state.settings)
        args = (state.settings, registered.base_model) if registered else (state.settings,)
        engine, model_dir = await asyncio.to_thread(build_engine, *args)
        await engine.start()
        if registered is not None:
            await state.attach_registered(engine, str(model_dir), registered)
        else:
            state.attach(engine, str(model_dir))
        await _preload_adapters(state)
        log.info("model %s ready in %.1f s", state.settings.model_name, time.time() - state.started_at)
    except Exception as exc:  # stay alive and say why on /health, /ready and every generation route
        log.exception("model failed to load")
        state.load_error = f"{type(exc).__name__}: {exc}"


async def _preload_adapters(state: ServerState) -> None:
    assert state.adapters is not None
    for spec in state.settings.lora_modules:
        name, _, path = spec.partition("=")
        await state.adapters.load(name.strip(), path.strip())


def _task_router(state: ServerState) -> TaskRouter:
    from ministudio_serve.deps import get_generation

    return TaskRouter(state.settings, state.metrics, lambda: get_generation(state), lambda: state.load_seconds)


def create_app(settings: ServeSettings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    state = ServerState(settings, Metrics(settings.model_name), RequestLog(settings.request_log_path))
    routers, needs_engine = PROFILES[settings.profile]
    if needs_engine:  # seed 003's task models and the embedder: built now, loaded in the background at startup
        state.tasks = _task_router(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        tasks_load = None
        if engine is not None:
            await engine.start()
            state.attach(engine)
            await _preload_adapters(state)
        elif needs_engine:
            task = asyncio.create_task(_load(state))
        if state.tasks is not None:
            tasks_load = asyncio.create_task(state.tasks.start(task, settings.preload_task_models))
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
            if state.tasks is not None:
                if tasks_load is not None:
                    tasks_load.cancel()
                    await asyncio.wait([tasks_load])
                await state.tasks.close()  # waits for a load in flight, then drops every model
            if state.engine is not None:
                await state.engine.stop()
            state.request_log.close()

    app = FastAPI(title="Mini Studio inference server", version="0.1.0", lifespan=lifespan)
    app.state.server = state
    state.metrics.watch(
        lambda: state.engine.stats() if state.engine else None,
        lambda: state.adapters.loaded_count() if state.adapters else 0,
    )
    errors.install(app)
    app.add_middleware(
        Gatekeeper,
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        metrics=state.metrics,
        trusted_hosts=settings.trusted_hosts,
    )
    app.add_middleware(SageMakerRoutes)  # outside the key check: it checks the route the request is turned into
    if settings.cors_origins:
        # Added last so it is outermost: preflight requests are answered before the key check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    for router in routers:
        app.include_router(router)
    return app
