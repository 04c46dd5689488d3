"""Upload the web UI after `sam deploy` (what `make deploy-web` runs): web/ into the stack's private web
bucket, a config.json with this stack's API and WebSocket URLs, then a CloudFront invalidation.

    python infra/web/deploy_web.py --stack photopipe-dev [--region eu-west-1] [--web web] [--dry-run]

Before uploading it checks that the API's CORS admits the distribution's origin (`AllowedOrigins` is "*" by
default; a list must name the WebUrl output), since otherwise the UI would load and every call fail.
Prints one JSON object; exits 1 with a message when something is missing."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_OUTPUTS = ("ApiUrl", "WebBucketName", "WebDistributionId", "WebUrl")
# Not content-hashed, so browsers revalidate them (ETag); CloudFront is invalidated after each upload.
REVALIDATE = "no-cache"
VENDORED = "public, max-age=86400"  # vendor/: pinned files, changed only with a new version
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class DeployError(Exception):
    """Something the person deploying must fix; the message says what."""


@dataclass(frozen=True)
class Upload:
    key: str
    path: Path | None  # None: config.json, generated
    content_type: str
    cache_control: str


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except cloudformation.exceptions.ClientError as e:
        raise DeployError(f"no stack {stack!r} here ({e}): run `sam deploy` first, or pass --stack") from e
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise DeployError(f"stack {stack!r} has no {', '.join(missing)} output: deploy this template first")
    return outputs


def plan(web: Path) -> list[Upload]:
    """Every file of the UI, with its type and caching; config.json is written, not copied."""
    if not (web / "index.html").is_file():
        raise DeployError(f"{web} has no index.html: pass --web with the UI's folder")
    uploads = []
    for path in sorted(p for p in web.rglob("*") if p.is_file()):
        key = path.relative_to(web).as_posix()
        if key == "config.json" or any(part.startswith(".") for part in path.parts):
            continue
        content_type = (
            TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        if content_type.startswith("text/") or content_type.endswith(("json", "javascript")):
            content_type += "; charset=utf-8"
        cache = VENDORED if key.startswith("vendor/") else REVALIDATE
        uploads.append(Upload(key, path, content_type, cache))
    uploads.append(Upload("config.json", None, "application/json; charset=utf-8", REVALIDATE))
    return uploads


def ui_config(outputs: dict[str, str]) -> dict[str, str]:
    return {"api_url": outputs["ApiUrl"].rstrip("/"), "websocket_url": outputs.get("WebSocketUrl", "")}


def check_cors(apigateway: Any, outputs: dict[str, str]) -> list[str]:
    """The API's allowed origins; raises DeployError when they do not admit the distribution."""
    api_id = (urlsplit(outputs["ApiUrl"]).hostname or "").split(".", 1)[0]
    cors = apigateway.get_api(ApiId=api_id).get("CorsConfiguration") or {}
    origins = list(cors.get("AllowOrigins") or [])
    web = outputs["WebUrl"].rstrip("/")
    if "*" not in origins and web not in origins:
        raise DeployError(
            f"the API's CORS does not admit the web UI ({web}); redeploy with "
            f"--parameter-overrides AllowedOrigins={','.join([*origins, web])}"
        )
    return origins


def deploy(stack: str, web: Path, *, session: Any | None = None, dry_run: bool = False) -> dict[str, Any]:
    session = session or boto3.session.Session()
    outputs = stack_outputs(session.client("cloudformation"), stack)
    origins = check_cors(session.client("apigatewayv2"), outputs)
    uploads = plan(web)
    config = ui_config(outputs)
    bucket = outputs["WebBucketName"]
    report: dict[str, Any] = {
        "stack": stack,
        "bucket": bucket,
        "web_url": outputs["WebUrl"],
        "config": config,
        "cors_origins": origins,
        "files": len(uploads),
        "dry_run": dry_run,
    }
    if dry_run:
        return report
    s3 = session.client("s3")
    for upload in uploads:
        body = json.dumps(config).encode() if upload.path is None else upload.path.read_bytes()
        s3.put_object(
            Bucket=bucket,
            Key=upload.key,
            Body=body,
            ContentType=upload.content_type,
            CacheControl=upload.cache_control,
        )
    wanted = {u.key for u in uploads}
    stale = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
        if obj["Key"] not in wanted
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]]}
        )
    invalidation = session.client("cloudfront").create_invalidation(
        DistributionId=outputs["WebDistributionId"],
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": f"deploy-web-{time.time_ns()}",
        },
    )
    report |= {"removed": stale, "invalidation": invalidation["Invalidation"]["Id"]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stack", default="photopipe-dev", help="the stack sam deploy made (default photopipe-dev)"
    )
    parser.add_argument("--region", default=None, help="its region (default: the AWS CLI's)")
    parser.add_argument("--web", type=Path, default=ROOT / "web", help="the UI's folder (default web/)")
    parser.add_argument("--dry-run", action="store_true", help="check and plan, upload nothing")
    args = parser.parse_args(argv)
    try:
        report = deploy(
            args.stack, args.web, session=boto3.session.Session(region_name=args.region), dry_run=args.dry_run
        )
    except DeployError as e:
        print(f"deploy-web: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
