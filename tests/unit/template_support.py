"""The translated template for the test modules beyond `test_template.py` (same loader, same translation)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from samtranslator.translator.transform import transform

from tests.unit.test_template import REGION, TEMPLATE, _BundledPolicies, _CfnLoader


def translated_template() -> dict[str, Any]:
    """template.yaml as CloudFormation, translated offline (CodeUri/ContentUri as s3:// URIs)."""
    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://photopipe-artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        return copy.deepcopy(transform(template, {}, _BundledPolicies()))
