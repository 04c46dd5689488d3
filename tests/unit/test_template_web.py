"""The web UI's hosting in template.yaml (translated offline): a private bucket that only the distribution
reads through Origin Access Control, HTTPS only, security headers with a CSP that allows no inline script and
no eval - the same policy the local gateway serves the UI with."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from samtranslator.translator.transform import transform

from photopipe_local.web import CSP as LOCAL_CSP
from photopipe_local.web import SECURITY_HEADERS
from tests.unit.test_template import REGION, TEMPLATE, _BundledPolicies, _CfnLoader


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    template = copy.deepcopy(template)
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://photopipe-artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        return dict(transform(template, {}, _BundledPolicies())["Resources"])


def _directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        if part.strip():
            name, *values = part.split()
            out[name] = values
    return out


def _csp(resources: dict[str, Any]) -> str:
    config = resources["WebSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]
    value = config["SecurityHeadersConfig"]["ContentSecurityPolicy"]
    assert value["Override"] is True
    sub = value["ContentSecurityPolicy"]
    return str(sub["Fn::Sub"] if isinstance(sub, dict) else sub)


def test_web_bucket_is_private_and_encrypted(resources: dict[str, Any]) -> None:
    props = resources["WebBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]


def test_only_this_distribution_reads_the_web_bucket(resources: dict[str, Any]) -> None:
    policy = resources["WebBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "WebBucket"}
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert len(allows) == 1
    allow = allows[0]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert source.endswith(":distribution/${WebDistribution}")
    denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_distribution_uses_origin_access_control_https_and_the_headers(resources: dict[str, Any]) -> None:
    oac = resources["WebOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    config = resources["WebDistribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["WebOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # no legacy OAI
    assert origin["DomainName"] == {"Fn::GetAtt": ["WebBucket", "RegionalDomainName"]}
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert behavior["ResponseHeadersPolicyId"] == {"Ref": "WebSecurityHeaders"}
    assert config["DefaultRootObject"] == "index.html"


def test_csp_allows_no_inline_script_and_no_eval(resources: dict[str, Any]) -> None:
    csp = _csp(resources)
    directives = _directives(csp)
    assert "unsafe-eval" not in csp
    assert "unsafe-inline" not in csp
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    # the UI talks to the HTTP and WebSocket APIs and the media bucket's presigned URLs, nothing else
    assert set(directives["connect-src"]) == {
        "'self'",
        "https://*.execute-api.${AWS::Region}.amazonaws.com",
        "wss://*.execute-api.${AWS::Region}.amazonaws.com",
        "https://*.s3.amazonaws.com",
        "https://*.s3.${AWS::Region}.amazonaws.com",
    }
    headers = resources["WebSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"][
        "SecurityHeadersConfig"
    ]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["ContentTypeOptions"]["Override"] is True


def test_the_local_gateway_serves_the_ui_under_the_same_policy(resources: dict[str, Any]) -> None:
    aws = _directives(_csp(resources))
    local = _directives(LOCAL_CSP.format(media="http://127.0.0.1:5000"))
    assert set(aws) == set(local)
    for name, values in aws.items():
        keywords = [v for v in values if not re.match(r"^(https?|wss?)://", v)]
        assert [v for v in local[name] if not v.startswith("http://127.0.0.1")] == keywords, name
    assert SECURITY_HEADERS["x-frame-options"] == "DENY"


def test_outputs_name_the_web_ui(resources: dict[str, Any]) -> None:
    source = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506
    outputs = source["Outputs"]
    assert outputs["WebUrl"]["Value"] == {"Fn::Sub": "https://${WebDistribution.DomainName}"}
    assert outputs["WebBucketName"]["Value"] == {"Ref": "WebBucket"}
    assert outputs["WebDistributionId"]["Value"] == {"Ref": "WebDistribution"}


def test_the_classify_test_route_has_its_own_function_that_may_write_the_cache(
    resources: dict[str, Any],
) -> None:
    function = resources["ClassifyApiFunction"]["Properties"]
    assert function["Timeout"] < 30  # an HTTP API integration waits 30 s at most
    routes = [
        r["Properties"]["RouteKey"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"
    ]
    paths = resources["HttpApi"]["Properties"]["Body"]["paths"]
    assert "post" in paths["/api/v1/classify"] or "POST /api/v1/classify" in routes
    integration = paths["/api/v1/classify"]["post"]["x-amazon-apigateway-integration"]
    assert "ClassifyApiFunction" in str(integration["uri"])
