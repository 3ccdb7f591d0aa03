"""Mini Studio's Grafana dashboards, built with grafana-foundation-sdk: `make dashboards` (or
`python -m monitoring.grafana.build`) writes monitoring/grafana/dashboards/*.json, which Grafana provisions from
monitoring/grafana/provisioning. Edit this file, never the JSON: a test rebuilds the dashboards and compares.

Every query names metrics the servers export (a test scrapes a real inference server and the control plane):
vLLM's names, which the transformers engine exports too, seed 002's `api_*`, and Mini Studio's `ministudio_*`.
The inference dashboard selects servers by the `deployment` label that the local file_sd targets and the EKS scrape
config both set (functions/compute/serving.py), so the same dashboard reads a laptop, Compose or a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from monitoring.grafana.control_plane import control_plane
from monitoring.grafana.inference import inference

OUT = Path(__file__).resolve().parent / "dashboards"


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "inference.json": inference,
    "control-plane.json": control_plane,
}


def render(dashboard: Dashboard) -> str:
    model = dashboard.build()
    for number, panel in enumerate(model.panels or [], start=1):  # the SDK leaves every id 0; Grafana wants them unique
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the JSON in the repository is not a fresh build")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    built = build_all()
    stale = [name for name, text in built.items() if _read(args.out / name) != text]
    extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in built) if args.out.is_dir() else []
    if args.check:
        for name in [*stale, *extra]:
            print(f"{args.out / name} is not what build.py makes: run `make dashboards`", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(built[name])
        print(f"wrote {args.out / name}")
    for name in extra:
        (args.out / name).unlink()
        print(f"removed {args.out / name} (no dashboard builds it)")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
