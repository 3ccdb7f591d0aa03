"""The web console in AWS: its built files (console/dist) in a private S3 bucket that only CloudFront reads (origin
access control), served with strict security headers; `config.json` next to them tells the console the API's URL.

The API allows the distribution's origin through CORS (the control plane sets CONSOLE_ORIGINS from `origin`); the
datasets bucket takes the presigned POSTs of large uploads; the console's Content-Security-Policy lets it talk to that
API and that bucket and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, Duration, Fn
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.cdk.config import Profile
from infra.cdk.constructs.storage import expire_logs, private_bucket
from infra.cdk.nag import suppress

DIST = Path(__file__).resolve().parents[3] / "console" / "dist"


def csp(api_origin: str, upload_origins: str) -> str:
    """Only the console's own scripts and styles; calls only to itself (config.json), the API and the datasets bucket
    (large files go there with the Upload's presigned POST)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
        f"connect-src 'self' {api_origin} {upload_origins}; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; upgrade-insecure-requests"
    )


def origin_of(url: str) -> str:
    """`https://abc.execute-api.../` (a deploy-time token) → `https://abc.execute-api...`."""
    return "https://" + Fn.select(2, Fn.split("/", url))


class ConsoleHosting(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_url: str,
        profile: Profile,
        access_logs: s3.IBucket,
        datasets: s3.Bucket,
        dist: Path = DIST,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = private_bucket(
            self, "Files", profile, server_access_logs_bucket=access_logs, server_access_logs_prefix="console-bucket/"
        )
        # CloudFront's standard logs are delivered with ACLs: a bucket of their own that allows them.
        self.logs = private_bucket(
            self,
            "CdnLogs",
            profile,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="console-cdn-logs/",
            lifecycle_rules=[expire_logs(profile)],
        )
        api_origin = origin_of(api_url)
        upload_origins = f"https://{datasets.bucket_domain_name} https://{datasets.bucket_regional_domain_name}"
        self.headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="Mini Studio console: strict CSP and security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=csp(api_origin, upload_origins), override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(730), include_subdomains=True, preload=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(
                        header="Cross-Origin-Opener-Policy", value="same-origin", override=True
                    ),
                    cloudfront.ResponseCustomHeader(
                        header="Permissions-Policy", value="camera=(), microphone=(), geolocation=()", override=True
                    ),
                ]
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment="Mini Studio console",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
                compress=True,
            ),
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.logs,
            log_file_prefix="cdn/",
        )
        suppress(
            self.distribution,
            "AwsSolutions-CFR1",
            "Static files of a console for anyone with an API key, wherever they are: no geographic restriction",
        )
        suppress(
            self.distribution,
            "AwsSolutions-CFR2",
            "Only static files behind it (GET/HEAD); every call with data goes to the API, which authenticates, "
            "rate-limits per tenant and is throttled at API Gateway",
        )
        suppress(
            self.distribution,
            "AwsSolutions-CFR4",
            "The default *.cloudfront.net certificate: CloudFront then allows TLSv1 for old clients whatever the "
            "minimum set; a custom domain with its own certificate gets TLSv1.2_2021",
        )
        self.origin = f"https://{self.distribution.distribution_domain_name}"
        self.url = self.origin + "/"
        # The browser POSTs large files straight to the datasets bucket. Any origin may read the answer to a POST:
        # naming the distribution here would close a cycle (the CSP above names this bucket), and CORS is no guard
        # for S3 POSTs anyway (a plain form can send one): the presigned policy is (key, size, expiry, signature).
        datasets.add_cors_rule(
            allowed_methods=[s3.HttpMethods.POST],
            allowed_origins=["*"],
            allowed_headers=["*"],
            exposed_headers=["ETag"],
            max_age=600,
        )

        sources = [s3deploy.Source.json_data("config.json", {"apiBaseUrl": api_url})]
        if (dist / "index.html").is_file():
            sources.insert(0, s3deploy.Source.asset(str(dist)))
        else:
            Annotations.of(self).add_warning_v2(
                "ministudio:console-not-built",
                f"{dist} is not built: the console bucket gets config.json only (run `make install` first)",
            )
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            destination_bucket=self.bucket,
            sources=sources,
            distribution=self.distribution,
            distribution_paths=["/index.html", "/config.json"],  # assets have hashed names
            prune=False,  # pages already open keep finding the assets of the build they loaded
            memory_limit=256,
        )
