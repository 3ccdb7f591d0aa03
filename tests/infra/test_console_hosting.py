"""The web console in AWS: a private bucket only CloudFront reads (origin access control), strict security headers,
the console URL as an output, and the API's CORS allow-list holding the distribution's origin."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed (pip install -e '.[cdk]')")

from typing import Any

from tests.infra.cfn import refs_in
from tests.infra.conftest import Synth


def _one(synth: Synth, kind: str) -> tuple[str, dict[str, Any]]:
    found = synth.resources("controlplane", kind)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found.items()))


def _console_bucket(synth: Synth) -> tuple[str, dict[str, Any]]:
    _, distribution = _one(synth, "AWS::CloudFront::Distribution")
    origin = distribution["Properties"]["DistributionConfig"]["Origins"][0]
    bucket_id = next(iter(refs_in(origin["DomainName"])))
    return bucket_id, synth.template("controlplane")["Resources"][bucket_id]


def test_console_bucket_is_private_and_read_only_by_its_distribution(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        bucket_id, bucket = _console_bucket(synth)
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert all(
            block[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        )
        assert "BucketEncryption" in bucket["Properties"] and "LoggingConfiguration" in bucket["Properties"], name
        distribution_id, distribution = _one(synth, "AWS::CloudFront::Distribution")
        origin = distribution["Properties"]["DistributionConfig"]["Origins"][0]
        oac_id, _ = _one(synth, "AWS::CloudFront::OriginAccessControl")
        assert refs_in(origin["OriginAccessControlId"]) == {oac_id}, name
        assert origin["S3OriginConfig"]["OriginAccessIdentity"] == "", name  # OAC, not the legacy OAI
        policies = [
            p
            for p in synth.resources("controlplane", "AWS::S3::BucketPolicy").values()
            if refs_in(p["Properties"]["Bucket"]) == {bucket_id}
        ]
        allows = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        readers = [s for s in allows if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}]
        assert readers and all(distribution_id in refs_in(s["Condition"]) for s in readers), name
        assert all(s["Action"] == "s3:GetObject" for s in readers), name


def test_console_is_served_over_https_with_a_strict_csp_and_security_headers(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        _, distribution = _one(synth, "AWS::CloudFront::Distribution")
        config = distribution["Properties"]["DistributionConfig"]
        behavior = config["DefaultCacheBehavior"]
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https" and config["DefaultRootObject"] == "index.html"
        headers_id, headers = _one(synth, "AWS::CloudFront::ResponseHeadersPolicy")
        assert refs_in(behavior["ResponseHeadersPolicyId"]) == {headers_id}, name
        security = headers["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
        csp = json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
        for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
            assert directive in csp, (name, directive)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp.replace("\\", ""), name
        assert security["FrameOptions"]["FrameOption"] == "DENY" and security["ContentTypeOptions"]["Override"]
        assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
        assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
        if synth.context.get("domain_name"):  # the API's own origin is the only other one the page may call
            assert f"connect-src 'self' https://{synth.context['domain_name']} https://" in csp, name
        else:
            assert "connect-src 'self' https://" in csp and "Fn::Split" in csp, name


def test_console_url_is_an_output_and_the_api_allows_its_origin(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        template = synth.template("controlplane")
        distribution_id, _ = _one(synth, "AWS::CloudFront::Distribution")
        assert distribution_id in refs_in(template["Outputs"]["ConsoleUrl"]["Value"]), name
        env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
        origins = env["CONSOLE_ORIGINS"]["Fn::Join"][1]
        assert origins[0] == '["https://' and origins[-1] == '"]' and distribution_id in refs_in(origins), name
        for key in ("IngestFunction", "StatusFunction"):  # only the API answers browsers
            assert "CONSOLE_ORIGINS" not in template["Resources"][key]["Properties"]["Environment"]["Variables"]
        # Large uploads: the browser POSTs to the datasets bucket (CORS for POST only; the presigned policy guards it)
        cors = [
            r["Properties"]["CorsConfiguration"]["CorsRules"]
            for r in synth.resources("controlplane", "AWS::S3::Bucket").values()
            if "CorsConfiguration" in r["Properties"]
        ]
        assert len(cors) == 1 and cors[0][0]["AllowedMethods"] == ["POST"], name
        assert cors[0][0]["AllowedOrigins"] == ["*"] and len(cors[0]) == 1, name
        _, headers = _one(synth, "AWS::CloudFront::ResponseHeadersPolicy")
        policy = headers["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"]
        cors_bucket = next(
            lid
            for lid, r in synth.resources("controlplane", "AWS::S3::Bucket").items()
            if "CorsConfiguration" in r["Properties"]
        )
        assert cors_bucket in refs_in(policy), name
        # The console learns the API's URL from config.json, deployed with the build
        _, deployment = _one(synth, "Custom::CDKBucketDeployment")
        assert deployment["Properties"]["Prune"] is False, name
