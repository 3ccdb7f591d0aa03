"""API Gateway → Lambda entry point. SnapStart: the before-snapshot hook warms what the first request needs."""

from __future__ import annotations

from mangum import Mangum

from functions.api.app import create_app

app = create_app()
handler = Mangum(app, lifespan="off")


def _warm() -> None:
    from functions.core.observability import get_logger
    from functions.store.blobs import get_blobs
    from functions.store.cache import get_cache

    get_logger()
    _ = get_blobs().client
    get_cache()


try:  # present only in Lambda's Python runtime with SnapStart
    from snapshot_restore_py import register_before_snapshot

    register_before_snapshot(_warm)
except ImportError:
    pass
