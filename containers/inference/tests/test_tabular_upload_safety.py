"""Only safe model formats are ever loaded: a pickle (any protocol, joblib too) or a skops file naming a type outside
the allow-list is refused with a 4xx before any loader runs, nothing is registered and no model becomes active."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from ministudio_serve.app import create_app
from ministudio_serve.settings import ServeSettings
from ministudio_serve.tabular import formats

KEY = "server-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
METADATA = json.dumps({"features": [{"name": "a"}, {"name": "b"}]})


class Canary:
    """Records every time an instance is rebuilt from a file: a loader that ran would leave a trace here."""

    rebuilt = 0

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]

    def __setstate__(self, state: dict[str, Any]) -> None:
        Canary.rebuilt += 1
        self.__dict__.update(state)

    def predict(self, rows: Any) -> list[int]:
        return [0 for _ in rows]


class Exploit:
    """A pickle that creates a file when loaded: proof of code run by the loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(
        profile="tabular", tabular_store=str(tmp_path / "store"), request_log=tmp_path / "log.sqlite", api_key=KEY
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def loads_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = sio.loads

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sio, "loads", spy)
    return calls


def fitted() -> LogisticRegression:
    return LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.5, 0.2], [0.1, 0.9]], [0, 1, 1, 0])


def upload(client: TestClient, data: bytes, name: str = "model.skops") -> Any:
    return client.post(
        "/models/logistic_regression/versions",
        headers=AUTH,
        files={"file": (name, data)},
        data={"metadata": METADATA, "activate": "true"},
    )


def assert_nothing_registered(client: TestClient) -> None:
    assert client.get("/models", headers=AUTH).json() == {"tenant": "default", "active": None, "models": []}
    refused = client.post("/predict", headers=AUTH, json={"input_data": {"a": 1.0, "b": 2.0}})
    assert refused.status_code == 404 and refused.json()["details"]["code"] == "no_active_model"


def joblib_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickle_upload_is_refused_and_never_loaded(client: TestClient, tmp_path: Path, protocol: int) -> None:
    # Given a pickle that would create a file if anything unpickled it
    marker = tmp_path / "pwned"
    data = pickle.dumps(Exploit(marker), protocol=protocol)

    # When it is uploaded under a .skops name
    response = upload(client, data)

    # Then it is refused as a pickle, the exploit never ran, and nothing is registered or active
    assert response.status_code == 415, response.json()
    assert response.json()["details"]["code"] == "pickle_refused" and "skops" in response.json()["message"]
    assert not marker.exists()
    assert_nothing_registered(client)


def test_joblib_file_of_a_real_model_is_refused(client: TestClient) -> None:
    response = upload(client, joblib_bytes(fitted()), name="model.joblib")
    assert response.status_code == 415 and response.json()["details"]["code"] == "pickle_refused"
    assert_nothing_registered(client)


@pytest.mark.parametrize(
    ("build", "untrusted"),
    [
        (lambda: Canary(), "Canary"),
        (lambda: make_pipeline(FunctionTransformer(func=os.system), fitted()), "posix.system"),
    ],
    ids=["custom-class", "pipeline-calling-os.system"],
)
def test_skops_file_with_an_untrusted_type_is_refused_and_never_loaded(
    client: TestClient, loads_calls: list[int], build: Any, untrusted: str
) -> None:
    # Given a skops file whose types skops does not trust and the allow-list does not name
    data = sio.dumps(build())
    Canary.rebuilt = 0

    response = upload(client, data)

    # Then: 422 naming the type, skops never asked to load it, no object rebuilt, nothing registered or active
    assert response.status_code == 422, response.json()
    assert response.json()["details"]["code"] == "untrusted_types" and untrusted in response.json()["message"]
    assert loads_calls == [] and Canary.rebuilt == 0
    assert_nothing_registered(client)


def test_trusted_skops_file_is_loaded_with_the_allow_list(client: TestClient, loads_calls: list[int]) -> None:
    response = upload(client, sio.dumps(fitted()))
    assert response.status_code == 201, response.json()
    assert loads_calls == [1]
    predicted = client.post("/predict", headers=AUTH, json={"input_data": {"a": 1.0, "b": 0.0}})
    assert predicted.status_code == 200 and predicted.json()["prediction"] == 1


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"PK\x03\x04not really a zip", 400, "invalid_skops"),
        (b"\x1f\x8b\x08compressed joblib", 415, "unsupported_format"),
        (b'{"not": "an xgboost model"}', 400, "invalid_model"),
        (b"", 415, "unsupported_format"),
    ],
)
def test_damaged_or_unknown_files_are_4xx(client: TestClient, data: bytes, status: int, code: str) -> None:
    response = upload(client, data)
    assert response.status_code == status, response.json()
    assert response.json()["details"]["code"] == code
    assert_nothing_registered(client)


def test_feature_count_must_match_the_model(client: TestClient) -> None:
    response = client.post(
        "/models/logistic_regression/versions",
        headers=AUTH,
        files={"file": ("m", sio.dumps(fitted()))},
        data={"metadata": json.dumps({"features": [{"name": "a"}]})},
    )
    assert response.status_code == 400 and "takes 2" in response.json()["message"]


def test_allow_list_extends_what_skops_trusts(monkeypatch: pytest.MonkeyPatch) -> None:
    data = sio.dumps(make_pipeline(FunctionTransformer(func=os.system), fitted()))
    with pytest.raises(formats.UnsafeModel):
        formats.check_skops(data)
    monkeypatch.setattr(formats, "EXTRA_TRUSTED_TYPES", frozenset({"posix.system"}))
    assert formats.check_skops(data) == ["posix.system"]
