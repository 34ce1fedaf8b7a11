from __future__ import annotations

import os

# Fixtures shared across folders.
pytest_plugins = ["tests.support.imds"]

# lambda_src/ and ec2_bootstrap/ are on sys.path through pytest's `pythonpath` (pyproject.toml).

# Tests never reach AWS: fake credentials and a fixed region for boto3 and moto.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)
