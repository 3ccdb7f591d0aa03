"""The web console builds from a clean checkout with `npm ci` (the committed lock file) on this Node, its TypeScript
unit tests pass, and the bundle it makes fits the strict CSP the API and CloudFront send (no inline script or style)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "console"
SOURCES = ("src", "test", "index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts")


def _npm(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.timeout(300)
def test_console_builds_from_a_clean_checkout_and_its_unit_tests_pass(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: Node 20+ is required to build the console")
    for name in SOURCES:
        src = CONSOLE / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    # --prefer-offline: the packages come from npm's cache when `make install` already fetched them
    _npm(["ci", "--prefer-offline", "--no-audit", "--no-fund", "--engine-strict"], tmp_path)
    _npm(["run", "build"], tmp_path)
    out = _npm(["test"], tmp_path)
    assert re.search(r"Tests\s+\S*\d+ passed", re.sub(r"\x1b\[[0-9;]*m", "", out)), out[-2000:]
    index = (tmp_path / "dist" / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index)
    assert assets and all((tmp_path / "dist" / a).is_file() for a in assets)
    assert not re.search(r"<script(?![^>]*\bsrc=)", index) and "<style" not in index and " style=" not in index
    lock = json.loads((CONSOLE / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 3 and lock["packages"][""]["dependencies"].keys() >= {"preact", "uplot"}
