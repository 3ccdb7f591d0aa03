"""API Gateway → Lambda entry point. SnapStart: the before-snapshot hook warms what the first request needs."""

from __future__ import annotations

from mangum import Mangum

from functions.api.app import create_app

app = create_app()
handler = Mangum(app, lifespan="off")


def _warm() -> None:
    """Create what the first request needs. Nothing here may fail the snapshot: on a first deploy the secrets
    still hold placeholders, so connections are not opened (they open lazily after restore)."""
    try:
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
