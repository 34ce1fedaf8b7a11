"""The demo instance's `shutdown -h now`: stop the instance in moto (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import sys

import boto3


def main(argv: list[str] | None = None) -> int:
    instance_id = (argv if argv is not None else sys.argv[1:])[0]
    boto3.client("ec2", region_name="us-east-1").stop_instances(InstanceIds=[instance_id])
    print(f"stopped {instance_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
