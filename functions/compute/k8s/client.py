"""A small JSON client for the Kubernetes API, on top of `kubernetes.client.ApiClient`, built without kubeconfig.

`KubeClient.from_eks(settings)` asks `eks:DescribeCluster` for the API endpoint and CA, and gives the ApiClient's
configuration a refresh hook that returns a current EKS token (token.py) on every request. Objects go in and come
out as plain dicts (the manifests in rayjob.py/serving.py are dicts, and so are custom resources): the generated
model classes would add a round trip through pydantic for nothing, and change between client releases. The
ApiClient still does the HTTP (TLS with the cluster's CA, auth header, pooling), so tests fake exactly its
transport: an HTTP server on 127.0.0.1 that replays recorded API responses.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import TYPE_CHECKING, Any

from functions.compute.k8s.token import TokenSource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from functions.core.settings import Settings

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """The API server refused a request (or could not be reached); `status` is its HTTP status, 0 when unreachable."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason") if isinstance(body, dict) else None
        detail = body.get("message") if isinstance(body, dict) else str(body or "")[:500]
        super().__init__(f"Kubernetes API {method} {path} → {status or 'unreachable'}: {detail or '(no message)'}")


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: the object already exists (create) or changed under us (update)."""


class Forbidden(KubeError):
    pass


_ERRORS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 403: Forbidden}


def path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """`/api/v1/...` for the core group, `/apis/{group}/{version}/...` for the rest; namespaced when given one."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{where}/{plural}" + (f"/{name}" if name else "")


class KubeClient:
    def __init__(self, api_client: ApiClient, *, timeout_seconds: float = 15.0) -> None:
        self.api = api_client
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_eks(cls, settings: Settings, *, eks: Any = None, session: Any = None) -> KubeClient:
        """Endpoint and CA from DescribeCluster, a token per request; `eks`/`session` are boto3 objects (tests)."""
        if not settings.eks_cluster_name:
            raise KubeError("GET", "eks:DescribeCluster", 0, "EKS_CLUSTER_NAME is not set: name the cluster to use")
        import boto3

        session = session or boto3.Session(region_name=settings.aws_region)
        eks = eks or session.client("eks", region_name=settings.aws_region)
        cluster = eks.describe_cluster(name=settings.eks_cluster_name)["cluster"]
        tokens = TokenSource(settings.eks_cluster_name, settings.aws_region, session.get_credentials)
        return cls.from_endpoint(cluster["endpoint"], tokens, ca_data=cluster["certificateAuthority"]["data"])

    @classmethod
    def from_endpoint(cls, endpoint: str, tokens: TokenSource | None, *, ca_data: str | None = None) -> KubeClient:
        """`ca_data` is base64 PEM as DescribeCluster returns it; kept in memory, never written to a file."""
        from kubernetes.client import ApiClient, Configuration

        config = Configuration(host=endpoint.rstrip("/"))
        if ca_data:
            config.ca_cert_data = base64.b64decode(ca_data).decode()
        if tokens is not None:
            config.api_key = {"BearerToken": tokens.get()}
            config.api_key_prefix = {"BearerToken": "Bearer"}

            def refresh(conf: Any) -> None:  # called before every request: cheap unless the token is near expiry
                conf.api_key["BearerToken"] = tokens.get()

            config.refresh_api_key_hook = refresh  # type: ignore[assignment]  # the client types it as None
        return cls(ApiClient(config))

    # --- verbs ------------------------------------------------------------------------------------------------
    def get(self, url: str) -> dict[str, Any]:
        return dict(self.request("GET", url))

    def list(self, url: str, label_selector: str | None = None, field_selector: str | None = None) -> list[Any]:
        query = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        return list(self.request("GET", url, query=query).get("items") or [])

    def create(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", url, body=body))

    def patch(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch: works the same on built-in kinds and custom resources (strategic merge does not)."""
        return dict(self.request("PATCH", url, body=body, content_type=MERGE_PATCH))

    def delete(self, url: str, propagation: str = "Foreground") -> dict[str, Any]:
        """Foreground: the object stays (with a deletionTimestamp) until what it owns is gone, so a later GET that
        answers 404 means the pods are gone too."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return dict(self.request("DELETE", url, body=body))

    def text(self, url: str, query: dict[str, Any] | None = None) -> str:
        result = self.request("GET", url, query=query, accept="text/plain")
        return result if isinstance(result, str) else json.dumps(result)

    def close(self) -> None:
        self.api.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> Any:
        import urllib3

        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, str(v)) for k, v in (query or {}).items()] or None
        method, full_url, headers, body, _ = self.api.param_serialize(
            method, url, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.api.call_api(
                method, full_url, header_params=headers, body=body, _request_timeout=self.timeout_seconds
            )
            raw = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(method, url, 0, f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # the client wraps TLS failures in ApiException(status=0)
            if getattr(exc, "status", None) == 0:
                raise KubeError(method, url, 0, getattr(exc, "reason", None) or str(exc)) from exc
            raise
        data = _decode(raw, response.getheader("content-type") or "")
        if not 200 <= response.status < 300:
            raise _ERRORS.get(response.status, KubeError)(method, url, response.status, data)
        return data


class ClientHolder:
    """A backend's one KubeClient, made on first use (DescribeCluster is a network call); tests hand in their own."""

    def __init__(self, settings: Settings, client: KubeClient | None) -> None:
        self.settings = settings
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> KubeClient:
        with self._client_lock:
            if self._client is None:
                self._client = KubeClient.from_eks(self.settings)
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _decode(raw: bytes | None, content_type: str) -> Any:
    text = (raw or b"").decode("utf-8", errors="replace")
    if "json" in content_type and text:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
