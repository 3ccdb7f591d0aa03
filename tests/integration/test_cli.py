"""`ministudio` against the real API app: files, jobs, models, usage and errors, through `main([...])` with the
CLI's HTTP client pointed at FastAPI's TestClient (the same routes the console uses)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from functions.cli import main
from tests.helpers.datasets import chat_lines
from tests.helpers.tiny_models import BASE

Headers = dict[str, str]


class Cli:
    def __init__(self, client: TestClient, key: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.client, self.key, self.capsys = client, key, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        # Results go to `out`: the in-process API's own JSON logs share this process's stdout.
        out = io.StringIO()
        self.capsys.readouterr()
        code = main([*argv, "--api-key", self.key], out=out, http=self.client)
        return code, out.getvalue(), self.capsys.readouterr().err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)  # one document, nothing else on stdout


@pytest.fixture
def cli(client: TestClient, make_tenant: Callable[..., Headers], capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(client, make_tenant("acme")["Authorization"].removeprefix("Bearer "), capsys)


def _bad_file(tmp_path: Path) -> Path:
    lines = chat_lines(12).splitlines(keepends=True)
    lines[4] = b'{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n'
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_files_upload_list_and_show_the_report_with_the_bad_line(
    cli: Cli, ingest: Callable[[], int], tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_lines(12))
    code, out, _ = cli("files", "upload", str(good))
    assert code == 0 and "uploaded" in out
    bad_id = cli.json("files", "upload", str(_bad_file(tmp_path)))["id"]
    ingest()

    listed = cli.json("files", "list")
    assert [f["filename"] for f in listed["data"]] == ["bad.jsonl", "good.jsonl"]
    good_id = listed["data"][1]["id"]
    code, out, _ = cli("files", "list")
    assert code == 0 and good_id in out and "processed" in out and "error" in out

    code, out, err = cli("files", "show", good_id)
    assert code == 0 and "examples 12" in out and "tokens ~" in out and "errors 0" in out
    code, out, err = cli("files", "show", bad_id)
    assert code == 1
    assert "line 5: " in out and "bot" in out
    assert out.count("line 5: ") == 1
    assert err.startswith(f"{bad_id} failed validation: line 5: ") and "bot" in err
    code, out, err = cli("files", "show", bad_id, "--json")  # scripts get the document and the same exit code
    assert code == 1 and json.loads(out)["validation"]["errors"][0]["line"] == 5


def test_files_upload_through_the_uploads_api_presigned_post(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[str] = []
    real_post = httpx.post

    def spy(url: str, **kwargs: Any) -> httpx.Response:
        posted.append(url)
        return real_post(url, **kwargs)

    monkeypatch.setattr("functions.cli.files.httpx.post", spy)
    path = tmp_path / "big.jsonl"
    path.write_bytes(chat_lines(12))
    file = cli.json("files", "upload", str(path), "--direct")
    assert file["filename"] == "big.jsonl" and file["bytes"] == path.stat().st_size
    assert len(posted) == 1 and posted[0].startswith("http://127.0.0.1:")  # the bytes went to S3 (moto), not the API


def test_jobs_create_list_cancel(cli: Cli, ingest: Callable[[], int], tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_lines(20))
    file_id = cli.json("files", "upload", str(good))["id"]
    ingest()
    job = cli.json(
        "jobs", "create", file_id, "--model", BASE, "--suffix", "cli", "--hyperparameters", '{"n_epochs": 2}'
    )
    assert job["status"] == "queued" and job["hyperparameters"]["n_epochs"] == 2
    assert [j["id"] for j in cli.json("jobs", "list")["data"]] == [job["id"]]
    code, out, _ = cli("jobs", "list")
    assert code == 0 and job["id"] in out and "queued" in out
    code, out, _ = cli("jobs", "cancel", job["id"])
    assert code == 0 and f"{job['id']}  cancelled" in out
    code, out, _ = cli("jobs", "watch", job["id"], "--interval", "0")
    assert code == 1 and "cancelled" in out  # a pipe gets plain lines; exit 0 only for succeeded


def test_models_list_and_usage(cli: Cli) -> None:
    models = cli.json("models", "list")
    assert BASE in [m["id"] for m in models["data"]]
    code, out, _ = cli("models", "list")
    assert code == 0 and BASE in out
    usage = cli.json("usage", "--start", "2026-01-01", "--end", "2100-01-01T00:00:00")
    assert usage["object"] == "usage" and usage["requests"] == 0
    assert usage["start_time"] == 1767225600
    code, out, _ = cli("usage")
    assert code == 0 and "total: 0 requests" in out
    assert cli.json("deployments", "list")["data"] == []


def test_errors_print_the_api_message_and_exit_non_zero(
    cli: Cli, client: TestClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli("files", "show", "file-nope")
    assert code == 1 and out == "" and err.startswith("error 404: ") and "Traceback" not in err
    code, _, err = cli("jobs", "create", "file-nope", "--model", BASE)
    assert code == 1 and "training_file" in err
    code, _, err = cli("jobs", "cancel", "ftjob-nope")
    assert code == 1 and "404" in err
    code, _, err = cli("models", "delete", BASE)
    assert code == 1 and err.startswith("error 4")
    code, _, err = cli("usage", "--start", "yesterday")
    assert code == 1 and "--start" in err
    code, _, err = cli("files", "upload", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "no such file" in err
    capsys.readouterr()
    assert main(["models", "list", "--api-key", "sk-wrong"], http=client) == 1
    assert "error 401" in capsys.readouterr().err
