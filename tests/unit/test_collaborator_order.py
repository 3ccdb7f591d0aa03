"""Services take their collaborators in one order (README, "Where things go"): store, cache, blobs, queues,
backend, settings. A new function that shuffles them fails here, not in a reviewer's head."""

from __future__ import annotations

import ast
from pathlib import Path

ORDER = ["store", "cache", "blobs", "queues", "backend", "settings"]
ROOT = Path(__file__).resolve().parents[2] / "functions"


def test_every_function_takes_its_collaborators_in_the_one_order() -> None:
    shuffled = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                roles = [a.arg for a in node.args.args if a.arg in ORDER]
                if roles != sorted(roles, key=ORDER.index):
                    shuffled.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}({', '.join(roles)})")
    assert not shuffled, "collaborators out of order (store, cache, blobs, queues, backend, settings):\n" + "\n".join(
        shuffled
    )
