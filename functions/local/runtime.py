"""`make run`: the whole platform on one machine, in one process plus children (moto server, redis-server).

The API runs under uvicorn; SQS pollers call the worker handlers exactly as Lambda's event source mapping
would; MongoDB is MONGODB_URL or an embedded in-process store. Everything is configured through the same
settings (environment variables) the cloud uses, so the code paths are the cloud's.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from functions.core.observability import log_to_directory
from functions.core.settings import Settings, get_settings
from functions.local import moto_recording, procs, restore
from functions.local.event_sources import Schedule, worker_handlers
from functions.local.prometheus import LocalPrometheus
from functions.local.resources import LocalResources, ensure_resources
from functions.local.restore import Restored
from functions.local.sqs_poller import SqsPoller
from functions.local.state import DEFAULT_DATA_DIR, Credentials, DataDir

DEMO_TENANT = "demo"
_FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class Platform:
    def __init__(
        self,
        port: int | None = None,
        *,
        log_dir: str | None = "logs",
        visibility_overrides: dict[str, int] | None = None,
        poll_wait_seconds: int = 1,
        reconcile_seconds: float = 30.0,
        print_fn: Callable[[str], None] = print,
        prometheus: bool | None = None,
        data_dir: str | Path | None = None,
        fresh: bool = False,
    ) -> None:
        self.port = port
        self.data_dir = data_dir  # None: MINISTUDIO_DATA_DIR, or nothing kept (tests)
        self.fresh = fresh
        self.data: DataDir | None = None
        self._new = True
        self.restored = Restored()
        self.log_dir = log_dir
        self.visibility_overrides = visibility_overrides
        self.poll_wait_seconds = poll_wait_seconds
        self.schedule = Schedule(reconcile_seconds)
        self.say = print_fn
        self.children: list[procs.Child] = []
        self.pollers: list[SqsPoller] = []
        self.resources: LocalResources | None = None
        self.admin_key = ""
        self.demo_key = ""
        self._saved_env: dict[str, str | None] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.prometheus = prometheus  # None: LOCAL_PROMETHEUS decides
        self.monitoring: LocalPrometheus | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _setenv(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def start(self) -> Platform:
        base = Settings()
        self.port = self.port or base.port
        where = self.data_dir or base.ministudio_data_dir
        self.data = data = DataDir.at(where) if where else None
        if data is not None:
            if self.fresh:
                data.wipe()
                self.say(f"Data: {data.root} emptied (FRESH)")
            self._new = data.is_new()
            self.say(f"Data: {data.root}" + (" (new)" if self._new else ""))
            data.create()
            self._setenv("MINISTUDIO_DATA_DIR", str(data.root))
        if not base.aws_endpoint_url:
            self._start_moto(data)
        if not base.redis_dsn:
            redis = procs.start_redis(data_dir=data.redis if data else None)
            self.children.append(redis)
            self._setenv("REDIS_URL", redis.url)
            self.say(
                f"Redis: redis-server at {redis.url}" + (" (append-only file in the data directory)" if data else "")
            )
        self._setenv("AWS_REGION", base.aws_region)
        self._setenv("AWS_DEFAULT_REGION", base.aws_region)
        if self.log_dir:
            self._setenv("LOG_DIR", self.log_dir)
            log_to_directory(self.log_dir)
        # Trainer runs, inference servers and Prometheus targets of this platform live in its data directory (or
        # beside its logs), never in ~/.cache: a second platform must not pick up this one's runs or scrape its servers.
        home = data.root if data else Path(self.log_dir or ".").resolve().parent / ".ministudio"
        for setting, folder in (("local_runs_dir", "runs"), ("local_prometheus_dir", "prometheus")):
            if not getattr(base, setting):
                self._setenv(setting.upper(), str(home / folder))
        if not base.local_serving_dir:
            self._setenv("LOCAL_SERVING_DIR", str(home / "serving"))
        creds = Credentials(data.credentials) if data else None
        if not base.inference_api_key:  # the one key this platform's inference servers accept
            key = creds.get_or_create("inference_api_key", "mss-") if creds else "mss-" + secrets.token_urlsafe(24)
            self._setenv("INFERENCE_API_KEY", key)
        if base.admin_api_key:
            self.admin_key = base.admin_api_key.get_secret_value()
        else:
            self.admin_key = creds.get_or_create("admin_key", "msa-") if creds else "msa-" + secrets.token_urlsafe(24)
        self._setenv("ADMIN_API_KEY", self.admin_key)
        self._reset_singletons()

        import boto3

        settings = get_settings()
        s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
        sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
        self.resources = ensure_resources(s3, sqs, settings, visibility_overrides=self.visibility_overrides)
        for field, value in self.resources.settings_overrides().items():
            self._setenv(field.upper(), value)
        self._reset_singletons()
        self._say_store()
        self.demo_key = self._demo_tenant(creds)
        self._watch_runs()
        if data is not None:
            self._restore(s3)
        for queue, handler in worker_handlers().items():
            poller = SqsPoller(sqs, self.resources.url(queue), handler, wait_seconds=self.poll_wait_seconds)
            poller.start()
            self.pollers.append(poller)
        self.schedule.start()
        self._serve()
        if self.prometheus if self.prometheus is not None else settings.local_prometheus:
            self._start_prometheus()
        return self

    def _start_moto(self, data: DataDir | None) -> None:
        moto = procs.start_moto(recording=data.recording if data else None)
        self.children.append(moto)
        self._setenv("AWS_ENDPOINT_URL", moto.url)
        for name, value in _FAKE_AWS.items():
            self._setenv(name, value)
        if data is not None:  # before anything writes to S3: replay what was recorded, then record from here on
            self.restored.repaired += moto_recording.restore(moto.url, data.recording)
        self.say(f"S3/SQS: moto server at {moto.url}" + (" (S3 recorded in the data directory)" if data else ""))

    def _say_store(self) -> None:
        settings = get_settings()
        if settings.mongodb_url:
            self.say("MongoDB: MONGODB_URL")
        elif settings.ministudio_data_dir:
            self.say(f"MongoDB: embedded montydb store in {Path(settings.ministudio_data_dir) / 'documents'}")
        else:
            self.say("MongoDB: embedded in-process store, not durable (no data directory)")

    def _restore(self, s3: Any) -> None:
        self.restored = restore.run(s3, repaired=self.restored.repaired)
        for line in self.restored.lines() if not self._new else []:
            self.say(line)

    def _start_prometheus(self) -> None:
        from functions.local import prometheus

        settings = get_settings()
        home = prometheus.home(settings)
        self.monitoring = prometheus.start(self.port or settings.port, home, settings.local_prometheus_port or None)
        self.say(f"Prometheus: {self.monitoring.url}  (inference servers announced in {self.monitoring.targets})")

    def _reset_singletons(self) -> None:
        from functions.store import blobs, cache, mongo

        get_settings.cache_clear()
        blobs.reset_blobs()
        cache.reset_cache()
        # The embedded store lives as long as the process: keep it across resets unless MONGODB_URL changed.
        if get_settings().mongodb_url:
            mongo.reset_store()

    def _watch_runs(self) -> None:
        """The local backend's trainers are this process's children: their exits settle jobs at once. The backend
        made here is the one the dispatch worker finds later (one per configuration)."""
        settings = get_settings()
        if settings.compute_backend != "local":
            return  # Ray, EKS and SageMaker runs report through the status queue and the reconciler
        from functions.compute import get_training_backend
        from functions.workers import status

        status.watch_runs(get_training_backend(settings))

    def _demo_tenant(self, creds: Credentials | None) -> str:
        """The demo tenant and its key; with a data directory the same key as last time, unless it was revoked."""
        from functions.core.ids import hash_key
        from functions.store.mongo import get_store
        from functions.tenants import service

        store = get_store()
        if store.tenants.get(DEMO_TENANT) is None:
            service.create_tenant(store, DEMO_TENANT, {})
        kept = creds.get("demo_key") if creds else None
        if kept and store.api_keys.by_hash(hash_key(kept)) is not None:
            return kept
        _, key = service.issue_key(store, DEMO_TENANT, "make run")
        if creds:
            creds.set("demo_key", key)
        return key

    def _serve(self) -> None:
        import uvicorn

        from functions.api.app import create_app
        from functions.api.metrics import instrument

        config = uvicorn.Config(instrument(create_app()), host="127.0.0.1", port=self.port or 8000, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not self._thread.is_alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"the API did not answer on {self.url}/health (port in use?)")

    def drain(self, timeout: float = 30.0) -> None:
        """Process every queued message now (tests)."""
        for poller in self.pollers:
            poller.drain(timeout)

    def stop(self) -> None:
        self.schedule.stopped.set()
        for poller in self.pollers:  # ask all first, so shutdown waits for the slowest handler, not the sum
            poller.request_stop()
        for poller in self.pollers:
            poller.stop()
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
        if self.monitoring is not None:
            self.monitoring.stop()
            self.monitoring = None
        from functions.compute import reset_training_backends

        reset_training_backends()  # stops this platform's trainers and inference servers before moto and Redis
        for child in reversed(self.children):
            child.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        get_settings.cache_clear()


def main(port: int | None = None, prometheus: bool | None = None, fresh: bool = False) -> None:
    procs.exit_on_sigterm()
    data_dir = Settings().ministudio_data_dir or DEFAULT_DATA_DIR
    platform = Platform(port, prometheus=prometheus, data_dir=data_dir, fresh=fresh)
    try:
        platform.start()
        where = platform.data.credentials if platform.data else None
        platform.say(
            "\n".join(
                [
                    f"API:          {platform.url}  (docs at {platform.url}/docs)",
                    f"Console:      {platform.url}/console/  (sign in with a key below; built by make install)",
                    f"Admin key:    {platform.admin_key}",
                    f"Demo tenant:  {DEMO_TENANT}  key {platform.demo_key}" + (f"  (kept in {where})" if where else ""),
                    "Try:          curl -H 'Authorization: Bearer <demo key>' "
                    f"-F purpose=fine-tune -F file=@data.jsonl {platform.url}/v1/files",
                    "Mini Studio ready",
                ]
            )
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        platform.say("stopping")
    finally:
        platform.stop()
