"""`make deploy-web` against moto: the stack's outputs are read, the API's CORS is checked, web/ and a
config.json land in the web bucket with their types and caching, stale files go, CloudFront is invalidated."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import ROOT

STACK = "photopipe-webtest"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_web", ROOT / "infra" / "web" / "deploy_web.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["deploy_web"] = module
    spec.loader.exec_module(module)
    return module


deploy_web = _load()


def _stack(session: Any, origins: list[str]) -> dict[str, str]:
    s3 = session.client("s3")
    s3.create_bucket(Bucket="photopipe-web-test")
    s3.put_object(Bucket="photopipe-web-test", Key="old/app-v0.js", Body=b"stale")
    api = session.client("apigatewayv2").create_api(
        Name="photopipe", ProtocolType="HTTP", CorsConfiguration={"AllowOrigins": origins}
    )
    distribution = session.client("cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": "photopipe-web",
            "Comment": "photopipe web UI",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "web-bucket",
                        "DomainName": "photopipe-web-test.s3.us-east-1.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "web-bucket",
                "ViewerProtocolPolicy": "redirect-to-https",
            },
        }
    )["Distribution"]
    outputs = {
        "ApiUrl": f"https://{api['ApiId']}.execute-api.us-east-1.amazonaws.com",
        "WebBucketName": "photopipe-web-test",
        "WebDistributionId": distribution["Id"],
        "WebUrl": f"https://{distribution['DomainName']}",
    }
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return outputs


@pytest.fixture
def session() -> Iterator[Any]:
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def test_deploy_uploads_the_ui_and_its_config_then_invalidates(session: Any) -> None:
    outputs = _stack(session, ["*"])

    report = deploy_web.deploy(STACK, ROOT / "web", session=session)

    s3 = session.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="photopipe-web-test")["Contents"]}
    assert {"index.html", "js/app.js", "vendor/htm-preact-standalone.module.js", "config.json"} <= keys
    assert "old/app-v0.js" not in keys
    assert report["removed"] == ["old/app-v0.js"]
    index = s3.get_object(Bucket="photopipe-web-test", Key="index.html")
    assert index["ContentType"] == "text/html; charset=utf-8"
    assert index["CacheControl"] == "no-cache"
    module = s3.get_object(Bucket="photopipe-web-test", Key="js/app.js")
    assert module["ContentType"] == "text/javascript; charset=utf-8"  # ES modules need a JavaScript type
    vendored = s3.get_object(Bucket="photopipe-web-test", Key="vendor/uqr.mjs")
    assert vendored["ContentType"] == "text/javascript; charset=utf-8"
    config = json.loads(s3.get_object(Bucket="photopipe-web-test", Key="config.json")["Body"].read())
    assert config == {"api_url": outputs["ApiUrl"], "websocket_url": ""}
    invalidations = session.client("cloudfront").list_invalidations(
        DistributionId=outputs["WebDistributionId"]
    )
    assert invalidations["InvalidationList"]["Quantity"] == 1
    assert report["invalidation"] == invalidations["InvalidationList"]["Items"][0]["Id"]


def test_deploy_refuses_when_the_api_would_refuse_the_ui(session: Any) -> None:
    outputs = _stack(session, ["https://photos.example.com"])

    with pytest.raises(deploy_web.DeployError) as refused:
        deploy_web.deploy(STACK, ROOT / "web", session=session)

    message = str(refused.value)
    assert outputs["WebUrl"] in message
    assert "AllowedOrigins=https://photos.example.com," in message
    assert "Contents" not in session.client("s3").list_objects_v2(Bucket="photopipe-web-test", Prefix="index")


def test_deploy_names_a_missing_stack(session: Any) -> None:
    with pytest.raises(deploy_web.DeployError, match="run `sam deploy` first"):
        deploy_web.deploy("no-such-stack", ROOT / "web", session=session)


def test_the_command_line_prints_json_or_a_message(
    session: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stack(session, ["*"])
    monkeypatch.setattr(deploy_web.boto3.session, "Session", lambda region_name=None: session)
    assert deploy_web.main(["--stack", STACK, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert deploy_web.main(["--stack", STACK, "--web", str(tmp_path)]) == 1
    assert "has no index.html" in capsys.readouterr().err
