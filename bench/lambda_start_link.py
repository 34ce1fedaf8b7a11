"""Start link: the handler's cold import and warm latency, against the bare boto3 calls it makes.

Both sides run in the same process against the same moto server on loopback:
- cold import: `import handler` vs `import boto3` in a fresh interpreter (median of N);
- warm latency: a /status request for a running instance (password cached, one DescribeInstances)
  vs that bare DescribeInstances call with the same client; the instance carries the idle
  checker's verdict tags and a keep-awake tag, so the answer reads and renders its `idle` object;
- warm keep-awake: a /keep-awake request (DescribeInstances, then CreateTags of the keep-awake
  tag) vs those two bare calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from bench.common import ROOT, median_seconds, moto_server, report

RUNS = 200
IMPORT_RUNS = 15


def cold_import(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambda_src")}
    samples = sorted(
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(IMPORT_RUNS)
    )
    return samples[len(samples) // 2]


def main() -> dict[str, float]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with moto_server():
        import boto3

        import handler

        ec2 = boto3.client("ec2")
        instance_id = ec2.run_instances(ImageId="ami-03cf127a", MinCount=1, MaxCount=1)[
            "Instances"
        ][0]["InstanceId"]
        boto3.client("ssm").put_parameter(
            Name="/bench/pass", Value="benchpass", Type="SecureString"
        )
        os.environ.update({"INSTANCE_ID": instance_id, "TEAM_PASS_PARAMETER": "/bench/pass"})
        now = datetime.now(UTC).replace(microsecond=0)

        def at(minutes: float) -> str:
            return (now + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")

        verdict = {
            "jupyter-on-demand:awake-because": f"kernel busy: train.ipynb | kept awake until {at(60)}",
            "jupyter-on-demand:stops-at": "",
            "jupyter-on-demand:idle-since": "",
            "jupyter-on-demand:verdict-at": at(0),
            "jupyter-on-demand:keep-awake-until": f"until={at(60)} set={at(-1)}",
        }
        ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in verdict.items()]
        )
        event = {
            "resource": "/status",
            "path": "/status",
            "httpMethod": "GET",
            "queryStringParameters": {"pass": "benchpass"},
        }
        keep_awake = {
            **event,
            "resource": "/keep-awake",
            "path": "/keep-awake",
            "queryStringParameters": {"pass": "benchpass", "hours": "1"},
        }
        answered = handler.lambda_handler(event, None)
        assert answered["statusCode"] == 200
        assert '"awake_because": ["kernel busy: train.ipynb"' in answered["body"]
        assert handler.lambda_handler(keep_awake, None)["statusCode"] == 200
        client = handler.client("ec2")
        tag = [
            {
                "Key": "jupyter-on-demand:keep-awake-until",
                "Value": verdict["jupyter-on-demand:keep-awake-until"],
            }
        ]

        def bare_keep_awake() -> None:
            client.describe_instances(InstanceIds=[instance_id])
            client.create_tags(Resources=[instance_id], Tags=tag)

        # Interleave the measurements so drift in moto's speed hits all of them equally.
        bare = handled = bare_kept = kept = 0.0
        for _ in range(4):
            bare += median_seconds(
                lambda: client.describe_instances(InstanceIds=[instance_id]), RUNS // 4
            )
            handled += median_seconds(lambda: handler.lambda_handler(event, None), RUNS // 4)
            bare_kept += median_seconds(bare_keep_awake, RUNS // 4)
            kept += median_seconds(lambda: handler.lambda_handler(keep_awake, None), RUNS // 4)
    import_boto3 = cold_import("boto3")
    import_handler = cold_import("handler")
    figures = {
        "bare_describe_instances_ms": bare / 4 * 1000,
        "handler_status_ms": handled / 4 * 1000,
        "warm_latency_ratio": handled / bare,
        "bare_describe_and_create_tags_ms": bare_kept / 4 * 1000,
        "handler_keep_awake_ms": kept / 4 * 1000,
        "keep_awake_latency_ratio": kept / bare_kept,
        "import_boto3_ms": import_boto3 * 1000,
        "import_handler_ms": import_handler * 1000,
        "cold_import_ratio": import_handler / import_boto3,
    }
    report("lambda_start_link", figures)
    return figures


if __name__ == "__main__":
    main()
