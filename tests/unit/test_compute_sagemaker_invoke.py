"""The proxy's calls to a SageMaker deployment. The HTTP exchange is faked at botocore's `before-send` hook, so the
request is the one botocore really serializes (path, headers) and the answer goes through botocore's real parsing,
event-stream decoding included: the frames below are encoded in AWS's event-stream wire format."""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from functions.compute.sagemaker_invoke import InvokeError, invoke, invoke_stream
from functions.compute.serving import Endpoint

BASE = Endpoint(kind="sagemaker", target="vllm-base-smollm2-135m-instruct-a1b2c3", component=None)
ADAPTER = Endpoint(kind="sagemaker", target=BASE.target, component="vllm-base-smollm2-135m-instruct-a1b2c3-lora-0f")


class Raw:
    """What urllib3 hands botocore: `stream()` for event streams, `read()` for whole bodies."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amt: int = 1024, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.chunks

    def read(self, amt: int | None = None) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data

    def close(self) -> None:
        pass


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    encoded = b"".join(
        struct.pack("B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", binascii.crc32(body))


def part(data: bytes) -> bytes:
    return frame(
        {":message-type": "event", ":event-type": "PayloadPart", ":content-type": "application/octet-stream"}, data
    )


def client_answering(status: int, headers: dict[str, str], chunks: list[bytes], seen: list[AWSPreparedRequest]) -> Any:
    client = botocore.session.get_session().create_client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        seen.append(request)
        return AWSResponse(request.url, status, headers, Raw(list(chunks)))

    client.meta.events.register("before-send.sagemaker-runtime.*", send)
    return client


def test_invoke_sends_the_body_to_the_endpoint_and_returns_the_answer() -> None:
    answer = json.dumps({"object": "chat.completion", "choices": []}).encode()
    seen: list[AWSPreparedRequest] = []
    client = client_answering(200, {"Content-Type": "application/json"}, [answer], seen)

    got = invoke(BASE, b'{"messages": []}', client=client)

    assert got == answer
    (request,) = seen
    assert request.url.endswith(f"/endpoints/{BASE.target}/invocations")
    assert request.body == b'{"messages": []}' and request.headers["Content-Type"] == b"application/json"
    assert "X-Amzn-SageMaker-Inference-Component" not in request.headers


def test_invoke_names_the_adapters_inference_component() -> None:
    seen: list[AWSPreparedRequest] = []
    invoke(ADAPTER, b"{}", client=client_answering(200, {}, [b"{}"], seen))
    assert seen[0].headers["X-Amzn-SageMaker-Inference-Component"] == ADAPTER.component.encode()  # type: ignore[union-attr]


def test_invoke_stream_yields_each_payload_part_as_it_comes() -> None:
    parts = [b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n', b'data: {"choices":[]}\n\n', b"data: [DONE]\n\n"]
    seen: list[AWSPreparedRequest] = []
    client = client_answering(200, {}, [part(p) for p in parts], seen)

    got = list(invoke_stream(ADAPTER, b'{"stream": true}', client=client))

    assert got == parts
    assert seen[0].url.endswith(f"/endpoints/{ADAPTER.target}/invocations-response-stream")
    assert seen[0].headers["X-Amzn-SageMaker-Inference-Component"] == ADAPTER.component.encode()  # type: ignore[union-attr]


def test_a_stream_that_breaks_midway_raises_after_the_parts_it_delivered() -> None:
    error = frame(
        {":message-type": "exception", ":exception-type": "ModelStreamError", ":content-type": "application/json"},
        json.dumps({"Message": "CUDA out of memory", "ErrorCode": "ModelError"}).encode(),
    )
    client = client_answering(200, {}, [part(b"data: 1\n\n"), error], [])
    received: list[bytes] = []
    with pytest.raises(InvokeError, match="CUDA out of memory"):
        for chunk in invoke_stream(BASE, b"{}", client=client):
            received.append(chunk)
    assert received == [b"data: 1\n\n"]


Case = tuple[int, dict[str, Any], int, bytes]
ERRORS: list[Case] = [
    # the container answered 400: its status and body pass through
    (
        424,
        {
            "__type": "ModelError",
            "Message": "Received client error (400) from primary",
            "OriginalStatusCode": 400,
            "OriginalMessage": '{"error":{"message":"messages: field required"}}',
        },
        400,
        b'{"error":{"message":"messages: field required"}}',
    ),
    (400, {"__type": "ValidationError", "message": "Endpoint vllm-x of account 1 not found."}, 404, b""),
    (429, {"__type": "ThrottlingException", "message": "Rate exceeded"}, 429, b""),
]


@pytest.mark.parametrize(("http", "body", "status", "passed"), ERRORS)
def test_errors_carry_a_status_the_proxy_can_answer_with(
    http: int, body: dict[str, Any], status: int, passed: bytes
) -> None:
    client = client_answering(http, {"x-amzn-errortype": body["__type"]}, [json.dumps(body).encode()], [])
    with pytest.raises(InvokeError) as caught:
        invoke(BASE, b"{}", client=client)
    assert (caught.value.status_code, caught.value.body) == (status, passed)


def test_the_proxys_import_reaches_the_adapter_component() -> None:
    # The proxy (functions/deployments/proxy_sagemaker.py) imports sagemaker_invoke as a module, lazily.
    from functions.compute import sagemaker_invoke as sagemaker

    seen: list[AWSPreparedRequest] = []
    assert sagemaker.invoke(ADAPTER, b"{}", client=client_answering(200, {}, [b"ok"], seen)) == b"ok"
    assert list(sagemaker.invoke_stream(BASE, b"{}", client=client_answering(200, {}, [part(b"p")], seen))) == [b"p"]
    assert seen[0].headers["X-Amzn-SageMaker-Inference-Component"] == ADAPTER.component.encode()  # type: ignore[union-attr]


def test_only_sagemaker_endpoints_are_invoked() -> None:
    call: Callable[..., Any] = invoke
    with pytest.raises(ValueError, match="not a SageMaker endpoint"):
        call(Endpoint(kind="http", url="http://127.0.0.1:9"), b"{}", client=object())
