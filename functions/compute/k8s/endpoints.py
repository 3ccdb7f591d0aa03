"""The eks serving backend: one Deployment + Service + KEDA ScaledObject per deployment (manifests in serving.py).

Adapters are not pushed to servers. Every replica resolves `ft:{base}:{tenant}:{suffix}:{job_id}` ids on demand
from the artifacts bucket (`--adapter-source`) and keeps MAX_LORAS of them in an LRU, so a replica KEDA adds later
serves every adapter too; POSTing `/v1/load_lora_adapter` to today's pods would miss tomorrow's. `add_adapter`
therefore checks that the adapter lives where the servers will look and records it on the Deployment (an
annotation, which does not roll the pods), so `status` lists it. One server serves its base model and every adapter,
so an adapter's endpoint is the deployment's.

The endpoint is the Service's internal NLB (serving.py): `ready` needs ready pods and the load balancer's hostname.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from functions.compute.k8s import serving
from functions.compute.k8s.client import ClientHolder, Conflict, KubeClient, KubeError, NotFound, path
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core.settings import Settings, get_settings

_ATTEMPTS = 5  # optimistic-concurrency retries for annotation updates racing each other


class EksServingBackend(ClientHolder):
    name = "eks"

    def __init__(self, settings: Settings | None = None, *, client: KubeClient | None = None) -> None:
        super().__init__(settings or get_settings(), client)

    def _urls(self, name: str | None = None) -> dict[str, str]:
        ns = self.settings.eks_namespace
        api_version, _, plural = serving.SCALED_OBJECT
        return {
            "deployment": path("apps/v1", "deployments", ns, name),
            "service": path("v1", "services", ns, name),
            "scaled_object": path(api_version, plural, ns, name),
        }

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        """Create what is missing and keep what exists: a redelivered deploy, or one that died halfway, completes
        the set without touching objects that are already there."""
        s = self.settings
        serving.replica_range(spec.min_replicas, spec.max_replicas)  # refuse a bad range before creating anything
        self._put_secret()
        collections = self._urls()
        bodies = {
            "deployment": serving.render_deployment(spec, s),
            "service": serving.render_service(spec, s),
            "scaled_object": serving.render_scaled_object(spec, s),
        }
        for kind, body in bodies.items():
            with contextlib.suppress(Conflict):  # already there: deploy is idempotent by name
                self.client.create(collections[kind], body)
        return self.status(spec.name)

    def status(self, name: str) -> EndpointStatus:
        try:
            deployment = self.client.get(self._urls(name)["deployment"])
        except NotFound:
            return EndpointStatus(name, EndpointState.missing)
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        pods: list[dict[str, Any]] = []
        if not ready:  # only then do the pods' reasons matter (unschedulable, image pull, crash loop)
            selector = f"{serving.POD_DEPLOYMENT_LABEL}={name}"
            pods = self.client.list(path("v1", "pods", self.settings.eks_namespace), label_selector=selector)
        status = serving.to_status(name, deployment, pods)
        if status.state is not EndpointState.ready:
            return status
        # Pods are ready: the endpoint is the Service's load balancer, once the controller has provisioned it.
        try:
            service: dict[str, Any] | None = self.client.get(self._urls(name)["service"])
        except NotFound:
            service = None
        events = self._service_events(name) if service and not serving.load_balancer_url(service) else []
        return serving.with_load_balancer(status, service, events)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        """The ScaledObject owns the range; the Deployment's replicas are moved into it at once, so a shrunk maximum
        does not wait for KEDA's next poll."""
        bounds = serving.replica_range(min_replicas, max_replicas)
        urls = self._urls(name)
        try:
            current = self.client.get(urls["deployment"])
        except NotFound:
            return EndpointStatus(name, EndpointState.missing)
        self.client.patch(urls["scaled_object"], {"spec": bounds})
        replicas = int((current.get("spec") or {}).get("replicas") or 0)
        patch = {
            "metadata": {
                "annotations": {serving.ANNOTATION_MIN: str(min_replicas), serving.ANNOTATION_MAX: str(max_replicas)}
            },
            "spec": {"replicas": min(max(replicas, min_replicas), max_replicas)},
        }
        self.client.patch(urls["deployment"], patch)
        return self.status(name)

    def delete(self, name: str) -> EndpointStatus:
        """ScaledObject first, so KEDA stops scaling what is being removed; the Deployment goes in the foreground,
        so `deleting` lasts until its pods are gone and a later call answers `missing`."""
        urls = self._urls(name)
        found = False
        for kind in ("scaled_object", "service", "deployment"):
            try:
                self.client.delete(urls[kind])
                found = True
            except NotFound:
                continue
        if not found:
            return EndpointStatus(name, EndpointState.missing)
        return EndpointStatus(name, EndpointState.deleting, message="deleting the Deployment and its pods")

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        """Servers load adapters on demand: check the adapter is where they will look, then record it."""
        expected = self._resolved_uri(adapter.model_id)
        if expected is None:
            raise ValueError(f"{adapter.model_id!r} is not an ft:{{base}}:{{tenant}}:{{suffix}}:{{job_id}} model id")
        if adapter.artifact_uri.rstrip("/") != expected.rstrip("/"):
            raise ValueError(
                f"adapter {adapter.model_id} is at {adapter.artifact_uri}, but servers resolve it at {expected}"
            )
        return self._change_adapters(name, lambda ids: [*ids, adapter.model_id] if adapter.model_id not in ids else ids)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        """Forgets the record; a replica that holds the adapter drops it when its LRU needs the slot."""
        return self._change_adapters(name, lambda ids: [i for i in ids if i != model_id])

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        """The deployment's own endpoint: its servers resolve every adapter of their base model on demand (the
        request's `model` picks it), so there is no per-adapter address. None while it has none (not ready, no load
        balancer yet, or gone)."""
        return self.status(name).endpoint

    # --- helpers ----------------------------------------------------------------------------------------------
    def _put_secret(self) -> None:
        """The server key Secret, written on every deploy so a rotated INFERENCE_API_KEY reaches new pods."""
        body = serving.render_secret(self.settings)
        ns = self.settings.eks_namespace
        try:
            self.client.create(path("v1", "secrets", ns), body)
        except Conflict:
            self.client.patch(path("v1", "secrets", ns, serving.SECRET_NAME), {"stringData": body["stringData"]})

    def _service_events(self, name: str) -> list[dict[str, Any]]:
        """Events about the Service (the load balancer controller reports failures there); best effort."""
        selector = f"involvedObject.kind=Service,involvedObject.name={name}"
        try:
            return self.client.list(path("v1", "events", self.settings.eks_namespace), field_selector=selector)
        except KubeError:
            return []

    def _resolved_uri(self, model_id: str) -> str | None:
        if not model_id.startswith("ft:"):
            return None
        parts = model_id[3:].rsplit(":", 3)
        if len(parts) != 4 or not all(parts):
            return None
        _, tenant, _, job_id = parts
        return serving.adapter_source(self.settings).format(tenant=tenant, job_id=job_id)

    def _change_adapters(self, name: str, change: Any) -> EndpointStatus:
        url = self._urls(name)["deployment"]
        for _ in range(_ATTEMPTS):
            try:
                current = self.client.get(url)
            except NotFound:
                raise LookupError(f"deployment {name} does not exist on the cluster") from None
            meta = current.get("metadata") or {}
            ids = list(json.loads((meta.get("annotations") or {}).get(serving.ANNOTATION_ADAPTERS) or "[]"))
            wanted = change(ids)
            if wanted == ids:
                return self.status(name)
            # resourceVersion makes the merge patch conditional: a concurrent change answers 409 and we re-read.
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": {serving.ANNOTATION_ADAPTERS: json.dumps(wanted)},
                }
            }
            try:
                self.client.patch(url, patch)
            except Conflict:
                continue
            return self.status(name)
        raise RuntimeError(f"deployment {name}: adapters changed concurrently {_ATTEMPTS} times; try again")
