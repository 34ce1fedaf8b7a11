"""Contracts between the Terraform stack and the code (the Lambda's, and the instance's in
ec2_bootstrap/layout.py): environment, settings, IAM actions, SSM names, paths, tags."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import handler
import idle
import idle_tags
import layout
import request
from tests.infrastructure.terraform import ROOT, TEMPLATE, blocks, locals_, unwrap

HANDLER_SOURCE = (ROOT / "lambda_src" / "handler.py").read_text()


def lambda_environment() -> dict[str, str]:
    function = next(
        b for t, n, b in blocks("resource") if (t, n) == ("aws_lambda_function", "start_link")
    )
    return unwrap(unwrap(unwrap(function["environment"])["variables"]))


def policy_statements(name: str) -> list[dict]:
    document = next(b for t, n, b in blocks("data") if (t, n) == ("aws_iam_policy_document", name))
    statements = [dict(s) for s in document.get("statement", [])]
    for dynamic in document.get("dynamic", []):
        for spec in dynamic.get("statement", {}).get("content", []):
            statements.append({**spec, "__dynamic__": dynamic["statement"]["for_each"]})
    return statements


def test_the_environment_the_lambda_reads_is_the_one_terraform_sets() -> None:
    read = set(re.findall(r'env(?:\.get\(|\[)"([A-Z_]+)"', HANDLER_SOURCE))
    # JUPYTER_HOST replaces the instance's public DNS name; only the local demo sets it.
    assert read - {"JUPYTER_HOST"} == set(lambda_environment())


def test_lambda_environment_holds_no_secret() -> None:
    values = " ".join(str(v) for v in lambda_environment().values())
    assert "var.team_pass" not in values and "github" not in values.lower()


def test_the_lambda_policy_grants_exactly_the_actions_the_handler_calls_plus_its_logs() -> None:
    granted = {a for s in policy_statements("lambda") for a in unwrap(s["actions"])}
    assert granted == set(handler.IAM_ACTIONS) | {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_the_handler_calls_only_the_actions_it_declares() -> None:
    calls = set(re.findall(r'client\("(\w+)"\)\.(\w+)\(', HANDLER_SOURCE))
    as_actions = {
        f"{service}:{''.join(p.title() for p in method.split('_'))}" for service, method in calls
    }
    assert as_actions == set(handler.IAM_ACTIONS)


def test_lambda_policy_is_scoped_to_this_instance_parameter_and_log_group() -> None:
    by_sid = {unwrap(s["sid"]): s for s in policy_statements("lambda")}
    assert unwrap(by_sid["StartTheInstance"]["resources"]) == ["${local.instance_arn}"]
    assert unwrap(by_sid["TagKeepAwake"]["resources"]) == ["${local.instance_arn}"]
    assert unwrap(by_sid["SwitchToFallbackType"]["resources"]) == ["${local.instance_arn}"]
    assert "fallback_instance_types" in str(by_sid["SwitchToFallbackType"]["__dynamic__"])
    assert unwrap(by_sid["ReadTeamPassword"]["resources"]) == ["${aws_ssm_parameter.team_pass.arn}"]
    assert unwrap(by_sid["WriteItsLogs"]["resources"]) == [
        "${aws_cloudwatch_log_group.lambda.arn}:*"
    ]
    assert unwrap(by_sid["PublishNotifications"]["resources"]) == ["${aws_sns_topic.notify[0].arn}"]
    # DescribeInstances has no resource-level permissions in AWS; it is the only "*".
    star = [sid for sid, s in by_sid.items() if "*" in unwrap(s["resources"])]
    assert star == ["DescribeInstances"]


def test_no_policy_grants_wildcard_actions() -> None:
    for _, name, _ in (b for b in blocks("data") if b[0] == "aws_iam_policy_document"):
        for statement in policy_statements(name):
            for action in unwrap(statement["actions"]):
                assert "*" not in action, (name, action)


def test_the_instance_reads_only_its_secrets_and_code_and_tags_only_ready_and_verdict() -> None:
    by_sid = {unwrap(s["sid"]): s for s in policy_statements("instance")}
    assert set(by_sid) == {
        "ReadItsSecrets",
        "ReadItsCode",
        "TagItsReadinessAndVerdict",
        "PublishNotifications",
    }
    assert unwrap(by_sid["ReadItsCode"]["resources"])[0].endswith(
        ":parameter${local.bootstrap_parameter_prefix}/*"
    )
    assert unwrap(by_sid["ReadItsSecrets"]["resources"]) == [
        "${aws_ssm_parameter.team_pass.arn}",
        "${aws_ssm_parameter.github_token.arn}",
    ]
    assert unwrap(by_sid["TagItsReadinessAndVerdict"]["actions"]) == ["ec2:CreateTags"]
    conditions = {
        (unwrap(c["test"]), unwrap(c["variable"])): unwrap(c["values"])
        for c in by_sid["TagItsReadinessAndVerdict"]["condition"]
    }
    assert conditions[("StringEquals", "aws:ResourceTag/Name")] == ["${local.instance_name}"]
    # checkov's hcl2 renders the expression oddly; what matters is which locals it lists.
    keys = re.sub(r"[\s'${}]", "", conditions[("ForAllValues:StringEquals", "aws:TagKeys")])
    assert keys == "concat([local.ready_tag],local.verdict_tags)"
    assert len(conditions) == 2


def test_the_ready_tag_is_the_one_the_lambda_reads() -> None:
    assert unwrap(locals_()["ready_tag"]) == handler.READY_TAG


def test_the_lambda_gets_the_configured_instance_type_to_return_to_after_a_fallback() -> None:
    assert lambda_environment()["INSTANCE_TYPE"] == "${var.instance_type}"
    instance = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_instance", "jupyter"))
    assert unwrap(instance["instance_type"]) == "${var.instance_type}"


def test_the_lambda_may_change_only_the_instance_type_and_only_to_a_configured_type() -> None:
    """Issue 10, point 9: ModifyInstanceAttribute could otherwise rewrite the user data or the
    shutdown behaviour. EC2 sets ec2:Attribute/InstanceType only on a request that changes the
    type, so StringEquals on it refuses every other attribute."""
    by_sid = {unwrap(s["sid"]): s for s in policy_statements("lambda")}
    statement = by_sid["SwitchToFallbackType"]
    assert unwrap(statement["actions"]) == ["ec2:ModifyInstanceAttribute"]
    conditions = [
        (unwrap(c["test"]), unwrap(c["variable"]), unwrap(c["values"]))
        for c in statement["condition"]
    ]
    assert [(test, variable) for test, variable, _ in conditions] == [
        ("StringEquals", "ec2:Attribute/InstanceType")
    ]
    # checkov's hcl2 renders the expression oddly; what matters is which variables it lists.
    values = re.sub(r"[\s'${}]", "", conditions[0][2])
    assert values == "distinct(concat([var.instance_type],var.fallback_instance_types))"


def test_later_applies_keep_the_ready_tag_the_instance_sets_on_itself() -> None:
    """Issue 10, point 6 (test_apply.py proves it against moto): ignore_changes takes no
    expressions, so the literal key there must be the handler's READY_TAG."""
    instance = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_instance", "jupyter"))
    ignored = unwrap(unwrap(instance["lifecycle"])["ignore_changes"])
    assert f'${{tags["{handler.READY_TAG}"]}}' in ignored


# --- The instance's contract (ec2_bootstrap/layout.py) -------------------------------------------


def test_the_settings_terraform_writes_are_the_ones_the_instance_checks() -> None:
    assert tuple(unwrap(locals_()["instance_config"])) == tuple(layout.SETTINGS)
    assert tuple(unwrap(locals_()["bootstrap_env"])) == layout.BOOTSTRAP_KEYS


def test_the_lambda_and_the_instance_agree_on_http_or_https() -> None:
    tls = unwrap(locals_()["instance_config"])["JUPYTER_TLS"]
    assert tls == '${var.jupyter_tls ? "1" : "0"}'
    assert unwrap(locals_()["jupyter_scheme"]) == '${var.jupyter_tls ? "https" : "http"}'
    assert lambda_environment()["JUPYTER_SCHEME"] == "${local.jupyter_scheme}"
    assert layout.jupyter_url({"JUPYTER_TLS": "1", "JUPYTER_PORT": "8443"}).startswith("https:")
    assert layout.jupyter_url({"JUPYTER_TLS": "0", "JUPYTER_PORT": "8443"}).startswith("http:")


def test_the_bundle_parameters_are_where_the_instance_reads_them() -> None:
    by_name = {n: b for t, n, b in blocks("resource") if t == "aws_ssm_parameter"}
    prefix = "${local.bootstrap_parameter_prefix}"
    assert unwrap(by_name["bootstrap_manifest"]["name"]) == layout.manifest_parameter(prefix)
    assert unwrap(by_name["settings"]["name"]) == layout.settings_parameter(prefix)
    assert unwrap(by_name["bootstrap_chunk"]["name"]) == f"{prefix}/${{count.index}}"
    manifest = unwrap(by_name["bootstrap_manifest"]["value"])
    assert re.findall(r"'(\w+)': ", manifest) == list(layout.MANIFEST_KEYS)
    chunks = unwrap(locals_()["bootstrap_chunks"]).replace(" ", "")
    assert f",{layout.BUNDLE_CHUNK_CHARS})" in chunks


def test_user_data_writes_the_files_where_the_layout_has_them() -> None:
    defaults = layout.Paths.from_env({})
    template = TEMPLATE.read_text()
    assert f"- path: {defaults.app}/${{name}}" in template
    assert f"- path: {defaults.bootstrap_env}\n" in template
    assert f"- path: {defaults.systemd}/${{name}}" in template
    assert tuple(unwrap(locals_()["user_data_units"])) == layout.USER_DATA_UNITS


def test_the_instance_name_is_written_once_for_its_tag_and_its_permission_to_tag_itself() -> None:
    assert unwrap(locals_()["instance_name"]) == "${var.name_prefix}-gpu"
    instance = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_instance", "jupyter"))
    assert unwrap(instance["tags"])["Name"] == "${local.instance_name}"
    by_sid = {unwrap(s["sid"]): s for s in policy_statements("instance")}
    statement = by_sid["TagItsReadinessAndVerdict"]
    conditions = {unwrap(c["variable"]): unwrap(c["values"]) for c in statement["condition"]}
    assert conditions["aws:ResourceTag/Name"] == ["${local.instance_name}"]
    assert "-gpu" not in " ".join(
        (ROOT / "infrastructure" / name).read_text() for name in ("ec2.tf", "iam.tf")
    )


# --- Issue 12: the idle verdict's tags and the keep-awake tag ------------------------------------


def ignored_changes() -> list[str]:
    instance = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_instance", "jupyter"))
    return unwrap(unwrap(instance["lifecycle"])["ignore_changes"])


def test_the_verdict_tags_are_the_same_for_terraform_the_instance_and_the_lambda() -> None:
    assert tuple(unwrap(locals_()["verdict_tags"])) == idle_tags.VERDICT_TAGS == idle.VERDICT_TAGS


def test_the_keep_awake_tag_is_the_same_for_terraform_the_instance_and_the_lambda() -> None:
    assert unwrap(locals_()["keep_awake_tag"]) == idle_tags.KEEP_AWAKE_TAG == idle.KEEP_AWAKE_TAG


def test_later_applies_keep_every_tag_the_instance_and_the_link_set() -> None:
    """An apply must not erase why the machine is awake or asleep, nor cancel a keep-awake
    (test_apply.py proves it against moto)."""
    # The instance's tuple (it writes them); the Lambda's must equal it (the test above).
    keys = [handler.READY_TAG, *idle_tags.VERDICT_TAGS, idle.KEEP_AWAKE_TAG]
    assert [f'${{tags["{key}"]}}' for key in keys] == [
        item for item in ignored_changes() if item.startswith("${tags[")
    ]


def test_the_lambda_may_tag_only_the_keep_awake_key_on_the_instance_in_its_form() -> None:
    by_sid = {unwrap(s["sid"]): s for s in policy_statements("lambda")}
    statement = by_sid["TagKeepAwake"]
    assert unwrap(statement["actions"]) == ["ec2:CreateTags"]
    assert unwrap(statement["resources"]) == ["${local.instance_arn}"]
    conditions = {
        (unwrap(c["test"]), unwrap(c["variable"])): unwrap(c["values"])
        for c in statement["condition"]
    }
    assert conditions == {
        ("ForAllValues:StringEquals", "aws:TagKeys"): ["${local.keep_awake_tag}"],
        ("StringLike", "aws:RequestTag/${local.keep_awake_tag}"): ["until=*Z set=*Z"],
    }
    # The form the condition admits is the one the Lambda writes.
    value = idle.KeepAwake.for_hours(datetime(2026, 11, 29, 14, tzinfo=UTC), 4).value()
    assert value == "until=2026-11-29T18:00:00Z set=2026-11-29T14:00:00Z"
    assert re.fullmatch("until=.*Z set=.*Z", value)
    # No other statement lets the Lambda tag anything (DeleteTags: a cancel rewrites the tag).
    tagging = [unwrap(s["sid"]) for s in policy_statements("lambda") if "Tags" in str(s["actions"])]
    assert tagging == ["TagKeepAwake"]


def test_the_instance_may_not_write_the_keep_awake_tag_nor_the_lambda_the_verdict() -> None:
    instance = {unwrap(s["sid"]): s for s in policy_statements("instance")}
    keys = unwrap(
        next(
            c["values"]
            for c in instance["TagItsReadinessAndVerdict"]["condition"]
            if unwrap(c["variable"]) == "aws:TagKeys"
        )
    )
    assert "keep_awake_tag" not in keys
    assert "verdict_tags" not in str(policy_statements("lambda"))


def test_the_instance_shows_its_tags_in_its_metadata_for_the_keep_awake_tag() -> None:
    instance = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_instance", "jupyter"))
    assert unwrap(instance["metadata_options"])["instance_metadata_tags"] == ["enabled"]


def test_the_lambda_gets_the_keep_awake_cap_and_the_instance_both_new_settings() -> None:
    assert lambda_environment()["MAX_KEEP_AWAKE_HOURS"] == "${tostring(var.max_keep_awake_hours)}"
    settings = unwrap(locals_()["instance_config"])
    assert settings["WARN_MINUTES"] == "${tostring(var.warn_minutes)}"
    assert settings["MAX_KEEP_AWAKE_HOURS"] == "${tostring(var.max_keep_awake_hours)}"


def test_the_api_has_a_route_for_each_of_the_handlers_routes() -> None:
    routes = next(
        b for t, n, b in blocks("resource") if (t, n) == ("aws_api_gateway_resource", "route")
    )
    declared = re.findall(r"'([\w-]+)'", unwrap(routes["for_each"]))
    assert sorted(f"/{name}" for name in declared) == sorted(request.ROUTES)


# --- Issue 13: cost, notifications, spot ---------------------------------------------------------


def test_the_month_hours_tag_is_a_verdict_tag_the_instance_may_write_and_applies_keep() -> None:
    assert idle_tags.MONTH_HOURS_TAG == "jupyter-on-demand:month-hours"
    assert idle_tags.MONTH_HOURS_TAG in unwrap(locals_()["verdict_tags"])
    assert f'${{tags["{idle_tags.MONTH_HOURS_TAG}"]}}' in ignored_changes()


def test_the_instance_gets_the_four_new_settings_from_their_variables() -> None:
    settings = unwrap(locals_()["instance_config"])
    assert list(settings)[-4:] == ["LONG_RUN_HOURS", "NOTIFY_TOPIC_ARN", "PAGE_URL", "MARKET"]
    assert settings["LONG_RUN_HOURS"] == "${tostring(var.long_run_hours)}"
    assert settings["NOTIFY_TOPIC_ARN"] == "${local.notify_topic_arn}"
    assert settings["PAGE_URL"] == "${local.page_url}"
    assert settings["MARKET"] == "${var.market}"


def test_the_page_url_is_built_from_the_api_not_read_from_the_stage() -> None:
    """The stage depends on the Lambda, the Lambda on the instance, the instance on the settings:
    reading the stage's invoke_url there would be a cycle (test_apply.py compares the two)."""
    page_url = unwrap(locals_()["page_url"])
    assert page_url == (
        "https://${aws_api_gateway_rest_api.this.id}.execute-api.${local.region}."
        "${data.aws_partition.current.dns_suffix}/${local.stage_name}"
    )
    assert "aws_api_gateway_stage" not in page_url


def test_the_lambda_and_the_instance_get_the_same_topic_and_the_lambda_the_price() -> None:
    environment = lambda_environment()
    assert environment["NOTIFY_TOPIC_ARN"] == "${local.notify_topic_arn}"
    assert environment["PRICE_PER_HOUR_USD"] == "${local.price_per_hour_usd}"
    assert environment["PRICE_NOTE"] == "${local.price_note}"
    topic = unwrap(locals_()["notify_topic_arn"])
    assert topic == '${length(var.notify_emails) > 0 ? aws_sns_topic.notify[0].arn : ""}'


def test_both_may_publish_only_to_the_topic_and_only_when_it_exists() -> None:
    for name in ("instance", "lambda"):
        by_sid = {unwrap(s["sid"]): s for s in policy_statements(name)}
        statement = by_sid["PublishNotifications"]
        assert unwrap(statement["actions"]) == ["sns:Publish"]
        assert unwrap(statement["resources"]) == ["${aws_sns_topic.notify[0].arn}"]
        assert "condition" not in statement
        # The topic's count and the statement's for_each: the same condition.
        assert "length(var.notify_emails) > 0" in str(statement["__dynamic__"])
    topic = next(b for t, n, b in blocks("resource") if (t, n) == ("aws_sns_topic", "notify"))
    assert unwrap(topic["count"]) == "${length(var.notify_emails) > 0 ? 1 : 0}"
