"""The Kubernetes API through the official client's typed APIs, built without kubeconfig.

`KubeClient.from_eks(settings)` asks `eks:DescribeCluster` for the API endpoint and CA, and gives the ApiClient's
configuration a refresh hook that returns a current EKS token (token.py) on every request.

Built-in kinds go through `AppsV1Api`/`CoreV1Api`, RayJob and ScaledObject through `CustomObjectsApi`; `Resource`
picks the generated method for a verb, so a backend says `client.resource(DEPLOYMENTS, ns).get(name)`. Objects go
in as dicts (the manifests in rayjob.py/serving.py are dicts; the typed APIs check a built-in kind's dict against
its model before sending it) and come back as the server's JSON (`_preload_content=False`): custom resources have no
model, the readers take dicts, and building models only to turn them back into dicts would cost a Lambda for
nothing. Not `DynamicClient`: it asks the server for its API groups before its first call, round trips on every
cold start that buy nothing for kinds known in advance. The ApiClient does the HTTP (TLS with the cluster's CA,
auth header, pooling), so tests fake exactly its transport: an HTTP server on 127.0.0.1 that replays recorded API
responses.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.compute.k8s.token import TokenSource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from functions.core.settings import Settings

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """The API server refused a request (or could not be reached); `status` is its HTTP status, 0 when unreachable."""

    def __init__(self, action: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason") if isinstance(body, dict) else None
        detail = body.get("message") if isinstance(body, dict) else str(body or "")[:500]
        super().__init__(f"Kubernetes API {action} → {status or 'unreachable'}: {detail or '(no message)'}")


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: the object already exists (create) or changed under us (update)."""


class Forbidden(KubeError):
    pass


_ERRORS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 403: Forbidden}


@dataclass(frozen=True)
class Kind:
    """How the typed APIs name a kind. A built-in one by its API class (`api`, a KubeClient attribute) and the suffix
    of the generated methods (`read_namespaced_deployment`); a custom resource by group, version and plural."""

    api: str
    name: str
    group: str = ""
    version: str = ""
    namespaced: bool = True

    @classmethod
    def custom(cls, api_version: str, plural: str) -> Kind:
        group, version = api_version.split("/")
        return cls("custom", plural, group, version)


DEPLOYMENTS = Kind("apps", "deployment")
SERVICES = Kind("core", "service")
SECRETS = Kind("core", "secret")
PODS = Kind("core", "pod")
EVENTS = Kind("core", "event")
NODES = Kind("core", "node", namespaced=False)


class Resource:
    """One kind in one namespace, or across the cluster where `namespace` is None (for `list`)."""

    def __init__(self, client: KubeClient, kind: Kind, namespace: str | None) -> None:
        self.client, self.kind, self.namespace = client, kind, namespace

    def get(self, name: str) -> dict[str, Any]:
        return dict(self._call("read", name=name))

    def list(self, label_selector: str | None = None, field_selector: str | None = None) -> list[Any]:
        selectors = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
        return list(self._call("list", **selectors).get("items") or [])

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("create", body=body))

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch: works the same on built-in kinds and custom resources (strategic merge does not)."""
        return dict(self._call("patch", name=name, body=body, content_type=MERGE_PATCH))

    def delete(self, name: str, propagation: str = "Foreground") -> dict[str, Any]:
        """Foreground: the object stays (with a deletionTimestamp) until what it owns is gone, so a later GET that
        answers 404 means the pods are gone too."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return dict(self._call("delete", name=name, body=body))

    def _call(self, verb: str, **kwargs: Any) -> Any:
        kind, ns = self.kind, self.namespace
        if kind.api == "custom":
            verb = "get" if verb == "read" else verb
            method = f"{verb}_{'namespaced' if ns else 'cluster'}_custom_object"
            kwargs.update(group=kind.group, version=kind.version, plural=kind.name)
        elif ns:
            method = f"{verb}_namespaced_{kind.name}"
        else:
            method = f"{verb}_{kind.name}_for_all_namespaces" if kind.namespaced else f"{verb}_{kind.name}"
        if ns:
            kwargs["namespace"] = ns
        where = "/".join(p for p in (ns, kwargs.get("name")) if p)
        action = f"{verb} {kind.name}{f'.{kind.group}' if kind.group else ''} {where}".rstrip()
        return self.client.call(getattr(getattr(self.client, kind.api), method), action, **kwargs)


class KubeClient:
    def __init__(self, api_client: ApiClient, *, timeout_seconds: float = 15.0) -> None:
        from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi

        self.api = api_client
        self.timeout_seconds = timeout_seconds
        self.apps = AppsV1Api(api_client)
        self.core = CoreV1Api(api_client)
        self.custom = CustomObjectsApi(api_client)

    @classmethod
    def from_eks(cls, settings: Settings, *, eks: Any = None, session: Any = None) -> KubeClient:
        """Endpoint and CA from DescribeCluster, a token per request; `eks`/`session` are boto3 objects (tests)."""
        if not settings.eks_cluster_name:
            raise KubeError("eks:DescribeCluster", 0, "EKS_CLUSTER_NAME is not set: name the cluster to use")
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

    def resource(self, kind: Kind, namespace: str | None = None) -> Resource:
        return Resource(self, kind, namespace)

    def pod_log(self, namespace: str, pod: str, tail: int) -> str:
        """The pod's (only) container's last `tail` lines."""
        result = self.call(
            self.core.read_namespaced_pod_log,
            f"read pod log {namespace}/{pod}",
            name=pod,
            namespace=namespace,
            tail_lines=tail,
            _headers={"Accept": "text/plain"},
        )
        return result if isinstance(result, str) else json.dumps(result)

    def close(self) -> None:
        self.api.close()

    def call(
        self, method: Callable[..., Any], action: str, *, content_type: str = JSON, **kwargs: Any
    ) -> dict[str, Any] | str:
        """One typed-API call, answered as the server's JSON (text where it sends text); refusals as `KubeError`."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if kwargs.get("body") is not None:
            # Patch methods take the type as `_content_type`; create and delete ignore it and send none of their own.
            kwargs.update(_content_type=content_type, _headers={"Content-Type": content_type})
        try:
            response = method(**kwargs, _preload_content=False, _request_timeout=self.timeout_seconds)
            try:
                raw = response.data
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(action, 0, f"{type(exc).__name__}: {exc}") from exc
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 0:  # the client wraps TLS failures in ApiException(status=0)
                raise KubeError(action, 0, exc.reason or str(exc)) from exc
            content = (exc.headers or {}).get("content-type") or ""
            body = _decode((exc.body or "").encode() if isinstance(exc.body, str) else exc.body, content)
            raise _ERRORS.get(status, KubeError)(action, status, body) from exc
        return _decode(raw, response.headers.get("content-type") or "")


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
