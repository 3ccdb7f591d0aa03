"""EKS tokens: the format the API server's authenticator accepts, a signature that really covers the cluster header,
refresh before the 15-minute lifetime, and a client built from DescribeCluster without kubeconfig."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.stub import Stubber

from functions.compute.k8s import token
from functions.compute.k8s.client import KubeClient
from functions.core.settings import Settings

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")


def _sigv4_signature(url: str, headers: dict[str, str], secret: str) -> str:
    """SigV4 for a presigned GET, computed here from the AWS spec, independent of botocore's signer."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    signed = dict(query)["X-Amz-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in signed)
    empty_body = hashlib.sha256(b"").hexdigest()  # a GET has no body; STS hashes the empty one
    request = "\n".join(["GET", parts.path or "/", canonical_query, canonical_headers, ";".join(signed), empty_body])
    amz_date = dict(query)["X-Amz-Date"]
    scope = dict(query)["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_token_is_a_prefixed_unpadded_base64url_presigned_sts_call() -> None:
    made = token.eks_token("studio-prod", "eu-west-1", CREDS)
    assert made.startswith("k8s-aws-v1.")
    body = made[len("k8s-aws-v1.") :]
    assert "=" not in body and "+" not in body and "/" not in body
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    assert url == token.decode(made)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "sts.eu-west-1.amazonaws.com", "/")
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert query["X-Amz-Security-Token"] == "session-token"
    assert query["X-Amz-Credential"].startswith(f"AKIDEXAMPLE/{datetime.now(UTC):%Y%m%d}/eu-west-1/sts/aws4_request")


def test_the_signature_covers_the_cluster_name() -> None:
    url = token.decode(token.eks_token("studio-prod", "us-east-1", CREDS))
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    headers = {"host": "sts.us-east-1.amazonaws.com", "x-k8s-aws-id": "studio-prod"}
    assert _sigv4_signature(url, headers, CREDS.secret_key) == signature
    # STS (and so EKS) would refuse the token for any other cluster.
    other = {**headers, "x-k8s-aws-id": "someone-elses-cluster"}
    assert _sigv4_signature(url, other, CREDS.secret_key) != signature


def test_no_credentials_is_a_clear_error() -> None:
    with pytest.raises(token.TokenError, match="no AWS credentials"):
        token.eks_token("studio", "us-east-1", None)


def test_tokens_are_reused_until_near_their_15_minute_expiry() -> None:
    now = [1000.0]
    calls: list[int] = []

    def credentials() -> Credentials:
        calls.append(1)
        return CREDS

    source = token.TokenSource("studio", "us-east-1", credentials, clock=lambda: now[0])
    first = source.get()
    now[0] += 13 * 60
    assert source.get() is first and len(calls) == 1  # 13 minutes old: still good
    now[0] += 61  # 14 minutes and a second: within a minute of expiry
    assert source.get().startswith("k8s-aws-v1.") and len(calls) == 2
    assert token.REFRESH_AFTER_SECONDS < token.TOKEN_LIFETIME_SECONDS == 15 * 60


def test_client_comes_from_describe_cluster_with_the_ca_in_memory() -> None:
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        "MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl\n"
        "-----END CERTIFICATE-----\n"
    )
    session = boto3.Session(
        aws_access_key_id=CREDS.access_key,
        aws_secret_access_key=CREDS.secret_key,
        aws_session_token=CREDS.token,
        region_name="us-east-1",
    )
    eks = session.client("eks", region_name="us-east-1")
    cluster: dict[str, Any] = {
        "name": "studio",
        "arn": "arn:aws:eks:us-east-1:123456789012:cluster/studio",
        "endpoint": "https://0123456789ABCDEF0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthority": {"data": base64.b64encode(pem.encode()).decode()},
        "status": "ACTIVE",
    }
    with Stubber(eks) as stub:
        stub.add_response("describe_cluster", {"cluster": cluster}, {"name": "studio"})
        client = KubeClient.from_eks(
            Settings(eks_cluster_name="studio", aws_region="us-east-1"), eks=eks, session=session
        )
        stub.assert_no_pending_responses()
    config = client.api.configuration
    assert config.host == cluster["endpoint"]
    assert config.ca_cert_data == pem and config.ssl_ca_cert is None and config.verify_ssl
    auth = config.auth_settings()["BearerToken"]
    assert auth["key"] == "authorization" and auth["value"].startswith("Bearer k8s-aws-v1.")
    assert "x-k8s-aws-id" in token.decode(auth["value"].removeprefix("Bearer "))
    client.close()


def test_a_missing_cluster_name_says_which_setting() -> None:
    with pytest.raises(RuntimeError, match="EKS_CLUSTER_NAME"):
        KubeClient.from_eks(Settings(eks_cluster_name=None))
