"""The idle stop's tags and warning settings: the contract with the start link
(lambda_src/idle.py) and Terraform (infrastructure/locals.tf verdict_tags, keep_awake_tag: the
IAM policies and ignore_changes; WARN_MINUTES and MAX_KEEP_AWAKE_HOURS in the settings);
tests/infrastructure/test_contracts.py compares them. Not in layout.py: user_data ships that,
and EC2 caps user_data at 16 KB.
"""

from __future__ import annotations

from layout import setting_number

DEFAULT_WARN_MINUTES = 5.0
DEFAULT_MAX_KEEP_AWAKE_HOURS = 12.0
DEFAULT_LONG_RUN_HOURS = 8.0


def warn_minutes(config: dict[str, str]) -> float:
    return setting_number(config, "WARN_MINUTES", DEFAULT_WARN_MINUTES, zero_ok=True)


def max_keep_awake_hours(config: dict[str, str]) -> float:
    return setting_number(config, "MAX_KEEP_AWAKE_HOURS", DEFAULT_MAX_KEEP_AWAKE_HOURS)


def long_run_hours(config: dict[str, str]) -> float:
    """A session longer than this is told to the team (NOTIFY_TOPIC_ARN), then once a day."""
    return setting_number(config, "LONG_RUN_HOURS", DEFAULT_LONG_RUN_HOURS)


# The instance's verdict, as EC2 tags the start link reads for free with DescribeInstances
# (publish_verdict.py writes them; the instance role may write only these and READY_TAG).
AWAKE_BECAUSE_TAG = "jupyter-on-demand:awake-because"
STOPS_AT_TAG = "jupyter-on-demand:stops-at"
IDLE_SINCE_TAG = "jupyter-on-demand:idle-since"
VERDICT_AT_TAG = "jupyter-on-demand:verdict-at"
STOP_REASON_TAG = "jupyter-on-demand:stop-reason"
STOPPED_AT_TAG = "jupyter-on-demand:stopped-at"
# The instance's running hours this calendar month (UTC): "month=2026-11 hours=37.25 at=<ISO>";
# the start link adds the time since `at` (or since the launch) while it runs.
MONTH_HOURS_TAG = "jupyter-on-demand:month-hours"
VERDICT_TAGS = (
    AWAKE_BECAUSE_TAG,
    STOPS_AT_TAG,
    IDLE_SINCE_TAG,
    VERDICT_AT_TAG,
    STOP_REASON_TAG,
    STOPPED_AT_TAG,
    MONTH_HOURS_TAG,
)
# Written by the start link's /v1/keep-awake only ("until=<ISO> set=<ISO>"); the idle checker
# reads it through the instance metadata's tags (idle_keep_awake.py).
KEEP_AWAKE_TAG = "jupyter-on-demand:keep-awake-until"
