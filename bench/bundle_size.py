"""The Lambda asset's size against Lambda's 250 MB unzipped limit (`make bundle`).

    .venv/bin/python bench/bundle_size.py [--extras eks] [--keep DIR]

Builds the real asset exactly as `cdk deploy` does (infra/cdk/bundle.py: pip for manylinux2014_x86_64 / CPython
3.12, then the `functions` package), into a temporary folder, and prints its unzipped and zipped sizes and the
largest packages. Needs PyPI. Exits non-zero when the asset is over the limit or could not be built.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.cdk import bundle  # noqa: E402

MB = 1024 * 1024


def zipped_size(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.tell()


def largest(folder: Path, count: int = 10) -> list[tuple[str, int]]:
    sizes = [(p.name, bundle.tree_size(p) if p.is_dir() else p.stat().st_size) for p in folder.iterdir()]
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]


def measure(target: Path, extras: tuple[str, ...]) -> int:
    started = time.perf_counter()
    bundle.build(target, extras)
    built = time.perf_counter() - started
    unzipped = bundle.tree_size(target)
    limit = bundle.LAMBDA_UNZIPPED_LIMIT
    print(f"extras: {', '.join(extras) or 'none'}  built in {built:.0f} s")
    print(f"unzipped: {unzipped / MB:7.1f} MB of {limit / MB:.0f} MB ({unzipped / limit:.0%})")
    print(f"zipped:   {zipped_size(target) / MB:7.1f} MB")
    for name, size in largest(target):
        print(f"  {size / MB:7.1f} MB  {name}")
    if unzipped > limit:
        print("over Lambda's unzipped limit", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="comma-separated extras to include (eks for compute=eks)")
    parser.add_argument("--keep", type=Path, help="build here and keep it instead of a temporary folder")
    args = parser.parse_args()
    extras = tuple(e for e in args.extras.split(",") if e)
    try:
        if args.keep:
            return measure(args.keep, extras)
        with tempfile.TemporaryDirectory(prefix="ministudio-bundle-") as tmp:
            return measure(Path(tmp), extras)
    except bundle.BundlingError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
