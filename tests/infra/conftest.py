"""Synthesize each deployment variant once per session, the way `cdk synth` does it.

Each variant runs `infra/cdk/app.py` in its own process with CDK_CONTEXT_JSON and CDK_OUTDIR, exactly as the CDK
CLI invokes the app, without credentials and with bundling skipped (`aws:cdk:bundling-stacks=[]`). Variants run
two at a time: synthesis with cdk-nag is CPU-bound and takes most of a minute each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "us-east-1"
VPC_ID = "vpc-0123456789abcdef0"
CERTIFICATE = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"
ALARM_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:ministudio-ops"
IMPORTED_CLUSTER, CLUSTER_SG = "gpu-cluster", "sg-0123456789abcdef0"


def _vpc_lookup() -> dict[str, Any]:
    """What `Vpc.from_lookup` would have cached in cdk.context.json after a lookup in a real account."""
    key = f"vpc-provider:account={ACCOUNT}:filter.vpc-id={VPC_ID}:region={REGION}:returnAsymmetricSubnets=true"

    def subnets(kind: str, third_octet: int) -> list[dict[str, str]]:
        return [
            {
                "subnetId": f"subnet-0{kind[:3].lower()}{az}0000000000",
                "cidr": f"10.0.{third_octet + i}.0/24",
                "availabilityZone": f"{REGION}{az}",
                "routeTableId": f"rtb-0{kind[:3].lower()}{az}000000000",
            }
            for i, az in enumerate("ab")
        ]

    groups = [
        {"name": "Public", "type": "Public", "subnets": subnets("Public", 0)},
        {"name": "Private", "type": "Private", "subnets": subnets("Private", 10)},
    ]
    value = {
        "vpcId": VPC_ID,
        "vpcCidrBlock": "10.0.0.0/16",
        "ownerAccountId": ACCOUNT,
        "availabilityZones": [],
        "subnetGroups": groups,
    }
    return {key: value}


# Both environments and both compute backends, with every optional input exercised by at least one variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "dev-sagemaker": {"env": "dev", "compute": "sagemaker"},
    "prod-sagemaker": {
        "env": "prod",
        "compute": "sagemaker",
        "account": ACCOUNT,
        "region": REGION,
        "vpc_id": VPC_ID,
        "domain_name": "api.ministudio.example.com",
        "certificate_arn": CERTIFICATE,
        "alarm_topic_arn": ALARM_TOPIC,
        **_vpc_lookup(),
    },
    "dev-eks-imported": {
        "env": "dev",
        "compute": "eks",
        "eks_cluster_name": IMPORTED_CLUSTER,
        "eks_cluster_security_group_id": CLUSTER_SG,
    },
    "prod-eks": {"env": "prod", "compute": "eks"},
}


@dataclass
class Synth:
    name: str
    context: dict[str, Any]
    outdir: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"MiniStudio-{self.context['env']}"

    def template(self, stack: str) -> dict[str, Any]:
        """`network`, `compute` or `controlplane`."""
        names = {"network": "Network", "compute": "Compute", "controlplane": "ControlPlane"}
        return self.templates[f"{self.prefix}-{names[stack]}"]

    def resources(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template(stack)["Resources"].items() if r["Type"] == kind}


def _synth(name: str, context: dict[str, Any], outdir: Path) -> tuple[Synth, subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps({**context, "aws:cdk:bundling-stacks": []}),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    for var in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION", "AWS_PROFILE"):  # no credentials, no account
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "cdk" / "app.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    synth = Synth(name, context, outdir)
    if proc.returncode == 0:
        synth.manifest = json.loads((outdir / "manifest.json").read_text())
        for path in outdir.glob("*.template.json"):
            synth.templates[path.name.removesuffix(".template.json")] = json.loads(path.read_text())
    return synth, proc


@pytest.fixture(scope="session")
def synths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Synth]]:
    base = tmp_path_factory.mktemp("cdk")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_synth, name, ctx, base / name) for name, ctx in VARIANTS.items()}
        results = {name: future.result() for name, future in futures.items()}
    failed = {name: proc.stderr[-3000:] for name, (_, proc) in results.items() if proc.returncode != 0}
    if failed:
        pytest.fail(f"cdk synth failed: {json.dumps(failed, indent=1)}")
    yield {name: synth for name, (synth, _) in results.items()}


@pytest.fixture(scope="session")
def dev(synths: dict[str, Synth]) -> Synth:
    return synths["dev-sagemaker"]


@pytest.fixture(scope="session")
def prod(synths: dict[str, Synth]) -> Synth:
    return synths["prod-sagemaker"]
