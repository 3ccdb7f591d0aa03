"""Children get only what they need: a trainer started by the local backend, an inference server's environment and a
Ray job's runtime_env never carry the control plane's keys, database or Redis URLs, or anything else of its own."""

from __future__ import annotations

import functools
import json
import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.compute import subprocs
from functions.compute.base import RunState
from functions.compute.local import LocalBackend
from functions.compute.ray import RayBackend
from functions.core.settings import Settings
from tests.helpers import waiting
from tests.helpers.specs import recording_ray_head, training_spec

# The control plane's own secrets and addresses, and one unknown variable: none may reach a child.
PRIVATE = ("ADMIN_API_KEY", "INFERENCE_API_KEY", "REDIS_URL", "MONGODB_URL", "SECRET_X", "PORT", "API_PORT")
DUMP_ENV = textwrap.dedent(
    """
    import json, os, sys
    spec = json.loads(sys.argv[sys.argv.index("--spec-json") + 1])
    with open(spec["hyperparameters"]["env_file"], "w") as fh:
        json.dump(dict(os.environ), fh)
    """
)


wait_for = functools.partial(waiting.wait_for, interval=0.02)


@pytest.fixture
def control_plane_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "ADMIN_API_KEY": "msa-" + secrets.token_hex(8),
        "INFERENCE_API_KEY": "mss-" + secrets.token_hex(8),
        "REDIS_URL": "redis://:pw@127.0.0.1:6399/0",
        "MONGODB_URL": "mongodb://user:pw@127.0.0.1:27099/db",
        "SECRET_X": secrets.token_hex(16),
        "PORT": "8123",
        "API_PORT": "8124",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5999",
        "AWS_REGION": "eu-west-1",
        "HF_HUB_OFFLINE": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOCAL_CHILD_ENV_PASSTHROUGH", raising=False)
    return values


@pytest.fixture
def backends() -> Iterator[list[LocalBackend]]:
    made: list[LocalBackend] = []
    yield made
    for backend in made:
        backend.close()


def trainer_env(tmp_path: Path, backends: list[LocalBackend]) -> dict[str, str]:
    """Start a real child through LocalBackend (settings read from the environment) and return what it saw."""
    script = tmp_path / "dump_env.py"
    script.write_text(DUMP_ENV)
    backend = LocalBackend(Settings(), command=[sys.executable, str(script)], runs_dir=tmp_path / "runs")
    backends.append(backend)
    env_file = tmp_path / "env.json"
    spec = training_spec("run-env", hyperparameters={"env_file": str(env_file)})
    backend.submit("run-env", spec)
    wait_for(lambda: backend.status("run-env").state is RunState.succeeded)
    seen: dict[str, str] = json.loads(env_file.read_text())
    return seen


def test_a_trainer_gets_path_and_s3_settings_but_no_key_or_url_of_the_control_plane(
    tmp_path: Path, backends: list[LocalBackend], control_plane_env: dict[str, str]
) -> None:
    seen = trainer_env(tmp_path, backends)
    assert not set(PRIVATE) & set(seen), sorted(set(PRIVATE) & set(seen))
    assert not {v for k, v in control_plane_env.items() if k in PRIVATE} & set(seen.values())
    assert seen["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999" and seen["AWS_REGION"] == "eu-west-1"
    assert seen["PATH"] and seen["HF_HUB_OFFLINE"] == "1" and seen["OMP_NUM_THREADS"].isdigit()


def test_local_child_env_passthrough_adds_the_named_variable_only(
    tmp_path: Path, backends: list[LocalBackend], control_plane_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_CHILD_ENV_PASSTHROUGH", '["SECRET_X"]')
    seen = trainer_env(tmp_path, backends)
    assert seen["SECRET_X"] == control_plane_env["SECRET_X"]
    assert not {"ADMIN_API_KEY", "INFERENCE_API_KEY", "REDIS_URL", "MONGODB_URL", "PORT"} & set(seen)


def test_an_inference_servers_environment_has_its_own_key_and_none_of_the_control_planes(
    control_plane_env: dict[str, str],
) -> None:
    # As local_serving builds it: the server key and its settings given explicitly, the rest from the allow-list.
    extra = {"PYTHONUNBUFFERED": "1", "AWS_REGION": "eu-west-1", "API_KEY": "server-key"}
    env = subprocs.child_env(extra, [])
    assert not set(PRIVATE) & set(env)
    assert env["API_KEY"] == "server-key" and env["PATH"] and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999"
    assert subprocs.child_env(extra, ["SECRET_X"])["SECRET_X"] == control_plane_env["SECRET_X"]


def test_a_ray_job_carries_only_its_passthrough_list_and_the_s3_settings(control_plane_env: dict[str, str]) -> None:
    head, posted = recording_ray_head("run-ray")
    settings = Settings(ray_head_address="http://127.0.0.1:8265", ray_env_passthrough=["HF_HUB_OFFLINE"])
    RayBackend(settings, transport=head).submit("run-ray", training_spec("run-ray"))
    env_vars = posted[0]["runtime_env"]["env_vars"]
    assert set(env_vars) == {
        "HF_HUB_OFFLINE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "RAY_JOB_STOP_WAIT_TIME_S",
    }
    body = json.dumps(posted[0])
    assert not [v for k, v in control_plane_env.items() if k in PRIVATE and v in body]
