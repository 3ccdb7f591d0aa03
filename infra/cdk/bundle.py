"""Build the control plane's Lambda asset on this machine, without Docker.

pip resolves the project's runtime dependencies (never its extras, unless asked) for Lambda's platform, not this
machine's: manylinux wheels for CPython `PYTHON_VERSION`, binary only, so nothing compiles here against the wrong
libc. Then the `functions/` package is copied beside them, with the few modules of the containers' shared package
that the control plane imports too (`VENDORED`: the training spec the trainer reads). The CDK construct
(`constructs/python_function.py`) and `bench/bundle_size.py` both call `build`, so what the bench measures is what
gets deployed.

No CDK import here: the bench runs without the `cdk` extra.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "functions"

# Both must agree with the functions' runtime and architecture (see constructs/python_function.py).
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_x86_64"

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024

# The ML stack belongs to the containers; one of these in the bundle means a dependency leaked in.
HEAVY = frozenset({"torch", "transformers", "vllm", "ray", "peft", "accelerate", "sagemaker", "tensorflow"})

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")

# ministudio_common (containers/common) needs torch as a package, so it is no dependency of the bundle: these of its
# modules, which import only pydantic, are copied in as they are. tests/infra/test_bundle.py checks that every
# ministudio_common module `functions` imports is listed here.
SHARED_SRC = Path("containers/common/src")
VENDORED = ("ministudio_common/__init__.py", "ministudio_common/catalogue.py", "ministudio_common/spec.py")


class BundlingError(RuntimeError):
    """The asset could not be built; the message carries pip's own explanation."""


def runtime_requirements(extras: Sequence[str] = (), pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's `dependencies`, plus those of the named extras: exactly what the Lambda code may import."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise BundlingError(f"pyproject.toml has no extra named {extra!r}")
        requirements.extend(optional[extra])
    return requirements


def requirement_name(requirement: str) -> str:
    """`aws-lambda-powertools>=3.37,<4` → `aws-lambda-powertools` (PEP 503 normalised)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise BundlingError(f"cannot read a package name from {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def pip_command(target: Path, requirements: Iterable[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        # Bytecode compiled here would be for this interpreter, not Lambda's: it only adds size.
        "--no-compile",
        "--platform",
        PLATFORM,
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--target",
        str(target),
        *requirements,
    ]


def build(target: Path, extras: Sequence[str] = ()) -> None:
    """Fill `target` with the dependencies and the `functions` package. Raises BundlingError on any failure."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        pip_command(target, runtime_requirements(extras)), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BundlingError(f"pip could not build the Lambda bundle:\n{result.stderr[-4000:]}")
    leaked = sorted(installed_distributions(target) & HEAVY)
    if leaked:
        raise BundlingError(f"the Lambda bundle must not contain the ML stack, found: {', '.join(leaked)}")
    shutil.copytree(ROOT / PACKAGE, target / PACKAGE, ignore=_IGNORED, dirs_exist_ok=True)
    for relative in VENDORED:
        source = ROOT / SHARED_SRC / relative
        if not source.is_file():
            raise BundlingError(f"{source} is missing: the control plane imports it")
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / relative)


def installed_distributions(target: Path) -> set[str]:
    names = set()
    for info in target.glob("*.dist-info"):
        names.add(re.sub(r"[-_.]+", "-", info.name.removesuffix(".dist-info").rsplit("-", 1)[0]).lower())
    return names


def source_hash(extras: Sequence[str] = ()) -> str:
    """Changes exactly when the bundle would: the package's files, the vendored modules, pyproject.toml, the target
    platform, the extras.

    The CDK uses it as the asset hash, so it never has to fingerprint the whole repository (venv included).
    """
    digest = hashlib.sha256()
    for part in (PLATFORM, PYTHON_VERSION, ",".join(sorted(extras))):
        digest.update(part.encode() + b"\0")
    digest.update((ROOT / "pyproject.toml").read_bytes())
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    for relative in VENDORED:
        path = ROOT / SHARED_SRC / relative
        if path.is_file():
            digest.update(relative.encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
