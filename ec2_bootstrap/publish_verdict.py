"""`publish_verdict.py`: tag this instance with the idle checker's verdict (idle_verdict.py).

Run by the idle checker (and the spot watcher) as root, in the venv (botocore), only when the
verdict changed materially, the month's hours fell behind, or the team is told something; the
tags come as a JSON object on stdin, and must be idle_tags.VERDICT_TAGS (the instance role may
write no other). Its optional key NOTIFY (not a tag) holds one sentence for the team
(idle_notify.py), published to the settings' NOTIFY_TOPIC_ARN (Subject "jupyter-on-demand") when
the admin set notify_emails (nothing otherwise), after the tags. The region and the instance come
as for the ready tag (boot_ready.py): config.env, then the instance metadata; the site's
environment (local.env) as the boot steps take it. Exit 0 when everything was done, 1 otherwise
(a failed message after the tags too: the caller tries again), with the reason on stderr.
Shipped in the code bundle.
"""

from __future__ import annotations

import json
import os
import sys

from idle_notify import NOTIFY
from idle_tags import VERDICT_TAGS
from layout import Paths, read_config


def main() -> int:
    try:
        values = json.loads(sys.stdin.read(1 << 16))
    except ValueError as error:
        print(f"publish_verdict: the tags are not JSON: {error}", file=sys.stderr)
        return 1
    if not isinstance(values, dict) or not values or not set(values) <= {*VERDICT_TAGS, NOTIFY}:
        print(
            f"publish_verdict: only {', '.join(VERDICT_TAGS)} and {NOTIFY} may be set",
            file=sys.stderr,
        )
        return 1
    message = values.pop(NOTIFY, None)
    if message is not None and not (isinstance(message, str) and message.strip()):
        print(f"publish_verdict: {NOTIFY} must be a sentence", file=sys.stderr)
        return 1
    from boot_install import site_config
    from boot_ready import instance_id
    from boot_sync import aws_client

    try:
        paths = Paths.from_env()
        # The site's environment, as the boot steps take it (boot.py): AWS_ENDPOINT_URL, a proxy.
        for key, value in site_config(paths).items():
            os.environ.setdefault(key, value)
        config = read_config(paths.config)
        if values:
            aws_client("ec2", config).create_tags(
                Resources=[instance_id(config)],
                Tags=[{"Key": key, "Value": str(value)} for key, value in values.items()],
            )
        topic = config.get("NOTIFY_TOPIC_ARN", "")
        if message and topic:
            aws_client("sns", config).publish(
                TopicArn=topic, Subject="jupyter-on-demand", Message=message[:1000]
            )
    except Exception as error:  # AWS, the metadata or the config: said, not raised
        print(f"publish_verdict: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
