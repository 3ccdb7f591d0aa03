"""CDK entry point (`cdk.json`: `.venv/bin/python infra/cdk/app.py`).

    cdk synth -c env=dev -c compute=sagemaker
    cdk deploy --all -c env=prod -c compute=eks -c eks_cluster_name=gpu -c vpc_id=vpc-0123456789abcdef0

Stacks, in deploy order: Network → Compute (sagemaker | eks) → ControlPlane.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Run as a script, Python puts this folder first on sys.path, where our `constructs/` package would shadow the
# CDK's `constructs`. Import everything as `infra.cdk.*` from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parents[1]))

from aws_cdk import App, Environment, Stack, Tags  # noqa: E402

from functions.core import names  # noqa: E402
from infra.cdk.config import DeployConfig  # noqa: E402
from infra.cdk.nag import apply_nag  # noqa: E402
from infra.cdk.stacks.compute_eks import EksComputeStack  # noqa: E402
from infra.cdk.stacks.compute_sagemaker import SageMakerComputeStack  # noqa: E402
from infra.cdk.stacks.control_plane import ControlPlaneStack  # noqa: E402
from infra.cdk.stacks.network import NetworkStack  # noqa: E402


def _environment(config: DeployConfig) -> Environment | None:
    """A concrete environment only when known: synth (and the tests) must work without credentials."""
    account = config.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = config.region or os.environ.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region) if account and region else None


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> App:
    """The whole app for one `-c` context. Tests call this directly with their own context."""
    # cdk.json's context (defaults and feature flags) applies to tests exactly as to the CLI, which passes it too.
    defaults = json.loads((_HERE.parents[1] / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    app = App(context={**defaults, **(context or {})}, outdir=outdir)
    config = DeployConfig.from_context(app.node.try_get_context)
    env = _environment(config)
    prefix = config.stack_prefix
    network = NetworkStack(app, f"{prefix}-Network", config=config, env=env)
    compute: SageMakerComputeStack | EksComputeStack
    if config.compute == "eks":
        compute = EksComputeStack(
            app, f"{prefix}-Compute", config=config, vpc=network.vpc, functions_sg=network.functions_sg, env=env
        )
    else:
        compute = SageMakerComputeStack(app, f"{prefix}-Compute", config=config, env=env)
    control = ControlPlaneStack(
        app,
        f"{prefix}-ControlPlane",
        config=config,
        vpc=network.vpc,
        security_group=network.functions_sg,
        compute=compute,
        env=env,
    )
    stacks: list[Stack] = [network, compute, control]
    for stack in stacks:
        Tags.of(stack).add("app", names.APP)
        Tags.of(stack).add("environment", config.env)
    apply_nag(app, stacks)
    return app


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
