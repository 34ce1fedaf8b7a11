"""SSM as Terraform fills it for the instance (the code bundle, the settings, the two secrets),
in moto: in process (`mock_aws`) or as a server a separate process reaches (`moto_ssm_server`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

REGION = "us-east-1"
PREFIX = "/jod/bootstrap"  # var.bootstrap_parameter_prefix's stand-in
TEAM_PASS_PARAMETER = "/jod/team-pass"
GITHUB_TOKEN_PARAMETER = "/jod/github-token"


def settings_for(repo_url: str, **overrides: str) -> dict[str, str]:
    """<prefix>/settings as Terraform writes it (every key of layout.SETTINGS), for `repo_url`;
    `overrides` replace or add keys."""
    return {
        "AWS_REGION": REGION,
        "TEAM_PASS_PARAMETER": TEAM_PASS_PARAMETER,
        "GITHUB_TOKEN_PARAMETER": GITHUB_TOKEN_PARAMETER,
        "GITHUB_REPO_URL": repo_url,
        "GITHUB_USER_NAME": "autosave",
        "JUPYTER_PORT": "8443",
        "JUPYTER_TLS": "1",
        "IDLE_MINUTES": "40",
        "READY_TAG": "jupyter-on-demand:ready-at",
        "WARN_MINUTES": "5",
        "MAX_KEEP_AWAKE_HOURS": "12",
        "LONG_RUN_HOURS": "8",
        "NOTIFY_TOPIC_ARN": "",
        "PAGE_URL": "https://abc123.execute-api.us-east-1.amazonaws.com/v1",
        "MARKET": "on-demand",
        **overrides,
    }


def put_bundle(client: Any, prefix: str, bundle: dict[str, str]) -> None:
    """The code bundle's manifest and chunks under `prefix`, one String parameter each."""
    for name, value in bundle.items():
        client.put_parameter(Name=f"{prefix}/{name}", Value=value, Type="String")


def put_settings(client: Any, prefix: str, settings: dict[str, str] | str) -> None:
    """<prefix>/settings: a dict as Terraform's jsonencode, or a str as it is (malformed ones)."""
    value = settings if isinstance(settings, str) else json.dumps(settings)
    client.put_parameter(Name=f"{prefix}/settings", Value=value, Type="String", Overwrite=True)


def put_secrets(client: Any, password: str, token: str) -> None:
    """The team password and the GitHub token, as SecureStrings at the settings' names."""
    client.put_parameter(Name=TEAM_PASS_PARAMETER, Value=password, Type="SecureString")
    client.put_parameter(Name=GITHUB_TOKEN_PARAMETER, Value=token, Type="SecureString")


@contextmanager
def moto_ssm_server() -> Iterator[tuple[str, Any]]:
    """A moto server on 127.0.0.1 (a free port): its endpoint URL and an SSM client of it, with
    moto's `testing` credentials; stopped on the way out."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        client = boto3.client(
            "ssm", region_name=REGION, endpoint_url=endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        yield endpoint, client
    finally:
        server.stop()
