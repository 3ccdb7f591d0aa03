"""API Gateway → Lambda entry point: `Mangum(create_app(), lifespan="off")`, built once per container.

The app is built on first use, not at import: building its ~45 routes (FastAPI analyses each route's parameters
and response model) is most of what importing the API would cost. With SnapStart the before-snapshot hook builds
it, and warms the clients the first request needs, so a restored container starts with both in memory; without
SnapStart (`$LATEST`, `sam local invoke`) the first event builds it.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from functions.core.lazy import Lazy


def _build() -> Mangum:
    from functions.api.app import create_app

    return Mangum(create_app(), lifespan="off")


_mangum = Lazy(_build)


def build() -> Mangum:
    """The app behind the handler, built now if it is not yet (the snapshot hook; bench/cold_start.py)."""
    return _mangum.get()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _mangum.get()(event, context)


def _warm() -> None:
    """Build the app and create what the first request needs. Nothing here may fail the snapshot: on a first deploy
    the secrets still hold placeholders, so connections are not opened (they open lazily after restore)."""
    try:
        build()
        from functions.core.observability import get_logger
        from functions.store.blobs import get_blobs
        from functions.store.cache import get_cache

        get_logger()
        _ = get_blobs().client
        get_cache()
    except Exception as exc:  # a cold first request is better than a failed publish
        print(f"before-snapshot warm-up skipped: {exc}")


try:  # present only in Lambda's Python runtime with SnapStart
    from snapshot_restore_py import register_before_snapshot

    register_before_snapshot(_warm)
except ImportError:
    pass
