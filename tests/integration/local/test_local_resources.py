"""Resources created from a template in moto (in-process): CloudFormation properties passed to boto3."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path

from moto import mock_aws

from photopipe_local.resources import AwsClients, create_resources
from photopipe_local.template import Template

SECRETS_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Plain:
    Type: AWS::SecretsManager::Secret
    Properties: {GenerateSecretString: {PasswordLength: 64, ExcludePunctuation: true}}
  DefaultOne: {Type: AWS::SecretsManager::Secret, Properties: {GenerateSecretString: {}}}
  DefaultTwo: {Type: AWS::SecretsManager::Secret, Properties: {GenerateSecretString: {}}}
  Document:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString:
        PasswordLength: 8
        SecretStringTemplate: '{"user": "a"}'
        GenerateStringKey: pw
"""


def test_generated_secrets_honour_the_template_options(
    project_factory: Callable[[str, dict[str, str]], Path],
) -> None:
    # GIVEN secrets generated with the template's GenerateSecretString options
    template = Template(project_factory(SECRETS_TEMPLATE, {}))
    with mock_aws():
        clients = AwsClients.for_endpoint(None, "us-east-1")
        physical = create_resources(template, clients)

        def value(logical_id: str) -> str:
            ref = physical[logical_id].ref
            assert ref is not None
            return clients.secretsmanager.get_secret_value(SecretId=ref)["SecretString"]

        # THEN each value is what the options ask for
        plain = value("Plain")
        assert len(plain) == 64
        assert set(plain) <= set(string.ascii_letters + string.digits)
        assert value("DefaultOne") != value("DefaultTwo")
        document = json.loads(value("Document"))
        assert document["user"] == "a"
        assert len(document["pw"]) == 8
