"""Real Terraform, the real AWS provider (5.100, from the local mirror), applied against moto.

One apply for the module (the `stack` fixture), then, in this order: a second plan shows no change,
the ready tag survives a plan, a new idle_minutes changes the settings and not user_data, the start
link and the instance's boot steps use what Terraform created, and the last test destroys it all
and finds nothing left. The preflight's plans from no state are in test_preflight.py, on a moto
server of their own, so that pytest-xdist runs the two files side by side.

moto differs from AWS in two places this suite meets, each asserted here as evidence and excluded
from the checks by exactly that much:
- DescribeInstances: moto leaves the instance's SecurityGroups empty (the groups are on its network
  interface only), where AWS lists them, so every plan wants to "add" the group to
  aws_instance.jupyter's vpc_security_group_ids (test_moto_lists_no_security_group_on_the_instance);
- GetFunctionConfiguration: moto drops the Lambda's LoggingConfig, so every plan wants to "add"
  aws_lambda_function.start_link's logging_config (test_moto_keeps_no_logging_config_for_the_lambda).
test_preflight.py asserts the two others it meets (Service Quotas, Budgets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import boot_secrets
import boot_sync
import handler
import idle
import idle_tags
from tests.infrastructure import stack as harness
from tests.infrastructure.terraform import bundle_files, one_line, resource
from tests.lambda_src.conftest import call, event

LAMBDA = "aws_lambda_function.start_link"
# What moto doesn't read back, so each plan wants to add it (see the module docstring).
MOTO_DIFFERENCES = {harness.INSTANCE: "vpc_security_group_ids", LAMBDA: "logging_config"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with harness.moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def stack(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> harness.Stack:
    workdir = tmp_path_factory.mktemp("stack")
    return harness.apply(workdir, endpoint, harness.design_note_variables(endpoint))


def described_instance(stack: harness.Stack) -> dict[str, Any]:
    """The instance as EC2 (moto) describes it."""
    reservations = stack.client("ec2").describe_instances(InstanceIds=[stack.instance_id])
    return reservations["Reservations"][0]["Instances"][0]


def changed_attributes(change: dict[str, Any]) -> set[str]:
    before, after = change["before"] or {}, change["after"] or {}
    unknown = {k for k, v in (change.get("after_unknown") or {}).items() if v is True}
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)} | unknown


def without_moto_difference(plan: harness.Plan) -> dict[str, list[str]]:
    """The plan's changes, less the update of a resource when what moto doesn't read back
    (MOTO_DIFFERENCES: empty before, set after) is all it changes."""
    changes = plan.changes()
    for address, attribute in MOTO_DIFFERENCES.items():
        if changes.get(address) == ["update"]:
            change = plan.change(address)
            if changed_attributes(change) == {attribute}:
                assert change["before"][attribute] == []
                del changes[address]
    return changes


# --- 1. init and validate -----------------------------------------------------------------------


def test_init_uses_the_aws_provider_from_the_mirror_and_validate_passes(
    stack: harness.Stack,
) -> None:
    lock = (stack.module / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert 'version     = "5.100.0"' in lock
    assert "hashicorp/archive" not in lock
    result = harness.run_terraform(stack.module, "validate", "-no-color")
    assert "Success! The configuration is valid." in result.stdout


def test_a_missing_mirror_fails_with_how_to_provide_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(harness.PLUGIN_DIR_ENV, str(tmp_path))
    with pytest.raises(harness.HarnessError) as raised:
        harness.plugin_dir()
    assert "terraform providers mirror" in str(raised.value)
    assert harness.PLUGIN_DIR_ENV in str(raised.value)


# --- 2. apply -----------------------------------------------------------------------------------


def test_the_first_apply_needs_only_the_design_note_variables_and_an_ami(
    stack: harness.Stack,
) -> None:
    written = json.loads((stack.module / "terraform.tfvars.json").read_text())
    assert set(written) == harness.DESIGN_NOTE_VARIABLES
    assert re.fullmatch(r"ami-[0-9a-f]+", written["ami"])
    assert "Apply complete!" in stack.apply_output
    assert "Warning" not in stack.apply_output
    assert set(stack.outputs) >= {"instance_id", "ssh_command", "start_url"}


def test_the_lambda_reserves_no_concurrency(stack: harness.Stack) -> None:
    """Issue 10, point 1: no reservation (moto, unlike a new account, would accept one)."""
    concurrency = stack.client("lambda").get_function_concurrency(
        FunctionName="jupyter-on-demand-start-link"
    )
    assert "ReservedConcurrentExecutions" not in concurrency


def test_the_instance_is_in_a_default_subnet_of_a_zone_that_offers_its_type(
    stack: harness.Stack,
) -> None:
    offered = harness.zones_offering(stack.client("ec2"), "g4dn.4xlarge")
    assert described_instance(stack)["Placement"]["AvailabilityZone"] in offered
    assert len(offered) < 6  # moto's us-east-1e doesn't offer it: the choice mattered


# --- 3. a second plan ---------------------------------------------------------------------------


def test_moto_lists_no_security_group_on_the_instance(stack: harness.Stack) -> None:
    """Evidence for a difference excluded from the no-change checks: AWS's DescribeInstances
    lists the instance's groups in Instances[].SecurityGroups (the provider reads
    vpc_security_group_ids from there); moto leaves it empty and has them on the interface."""
    instance = described_instance(stack)
    assert instance["SecurityGroups"] == []
    groups = instance["NetworkInterfaces"][0]["Groups"]
    assert [g["GroupName"] for g in groups] == ["jupyter-on-demand-jupyter"]


def test_moto_keeps_no_logging_config_for_the_lambda(stack: harness.Stack) -> None:
    """Evidence for the other difference excluded from the no-change checks: lambda.tf sets
    logging_config, which AWS returns in GetFunctionConfiguration's LoggingConfig (the provider
    reads it from there); moto drops it."""
    assert resource("aws_lambda_function", "start_link")["logging_config"]
    configuration = stack.client("lambda").get_function_configuration(
        FunctionName="jupyter-on-demand-start-link"
    )
    assert "LoggingConfig" not in configuration


def test_a_second_plan_shows_no_changes(stack: harness.Stack) -> None:
    plan = stack.plan()
    assert without_moto_difference(plan) == {}
    # Only moto's differences, if any: an update of each, exactly that one attribute, nothing else.
    assert set(plan.changes()) <= set(MOTO_DIFFERENCES)
    assert all(actions == ["update"] for actions in plan.changes().values())


# What the instance and the start link tag at runtime, as they would: the ready tag (issue 10,
# point 6), why the machine is awake or asleep (issue 12's verdict tags), and a keep-awake.
RUNTIME_TAGS = {
    handler.READY_TAG: "2026-01-01T00:00:00+00:00",
    idle.AWAKE_BECAUSE_TAG: "kernel busy: train.ipynb",
    idle.STOPS_AT_TAG: "",
    idle.IDLE_SINCE_TAG: "",
    idle.VERDICT_AT_TAG: "2026-01-01T00:00:00Z",
    idle.STOP_REASON_TAG: "nobody worked for 40 min",
    idle.STOPPED_AT_TAG: "2025-12-31T19:12:00Z",
    idle_tags.MONTH_HOURS_TAG: "month=2026-01 hours=3.25 at=2026-01-01T00:00:00Z",
    idle.KEEP_AWAKE_TAG: "until=2026-01-01T04:00:00Z set=2026-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def tagged_plan(stack: harness.Stack) -> harness.Plan:
    """The tags set on the instance as at runtime, then a plan (one for the two tests below)."""
    stack.client("ec2").create_tags(
        Resources=[stack.instance_id],
        Tags=[{"Key": key, "Value": value} for key, value in RUNTIME_TAGS.items()],
    )
    return stack.plan()


def test_the_ready_tag_the_instance_sets_survives_a_later_plan(
    stack: harness.Stack, tagged_plan: harness.Plan
) -> None:
    """Issue 10, point 6: the instance tags itself once Jupyter answers; Terraform leaves it."""
    assert without_moto_difference(tagged_plan) == {}
    if harness.INSTANCE in tagged_plan.changes():
        assert not {"tags", "tags_all"} & changed_attributes(tagged_plan.change(harness.INSTANCE))
    tags = {t["Key"]: t["Value"] for t in described_instance(stack)["Tags"]}
    assert tags.get(handler.READY_TAG) == RUNTIME_TAGS[handler.READY_TAG]


def test_the_verdict_and_keep_awake_tags_survive_a_later_plan(
    stack: harness.Stack, tagged_plan: harness.Plan
) -> None:
    """Issue 12: an apply must not erase why the machine is awake or asleep (the instance's
    verdict tags) nor cancel a keep-awake (the start link's tag)."""
    values = {key: RUNTIME_TAGS[key] for key in (*idle_tags.VERDICT_TAGS, idle.KEEP_AWAKE_TAG)}
    assert set(values) == {*idle_tags.VERDICT_TAGS, idle.KEEP_AWAKE_TAG} <= set(RUNTIME_TAGS)
    assert without_moto_difference(tagged_plan) == {}
    if harness.INSTANCE in tagged_plan.changes():
        assert not {"tags", "tags_all"} & changed_attributes(tagged_plan.change(harness.INSTANCE))
    tags = {t["Key"]: t["Value"] for t in described_instance(stack)["Tags"]}
    assert {key: tags.get(key) for key in values} == values


def test_the_instance_shows_its_tags_in_its_metadata(stack: harness.Stack) -> None:
    """Issue 12: the idle checker reads the keep-awake tag through the instance metadata. moto
    keeps the option as AWS does, so the second plan's no-change check covers it too."""
    options = described_instance(stack)["MetadataOptions"]
    assert options["InstanceMetadataTags"] == "enabled"
    assert options["HttpTokens"] == "required"


# --- 4. a new idle_minutes ----------------------------------------------------------------------


def test_a_new_idle_minutes_changes_the_settings_parameter_and_not_user_data(
    stack: harness.Stack,
) -> None:
    """Issue 10, point 5: settings reach the instance at every boot through SSM; user_data (and
    so the instance) doesn't change."""
    plan = stack.plan({"idle_minutes": 41})
    changes = without_moto_difference(plan)
    assert changes == {
        "aws_ssm_parameter.settings": ["update"],
        "aws_lambda_function.start_link": ["update"],  # its IDLE_MINUTES, shown on the page
    }
    settings = plan.change("aws_ssm_parameter.settings")
    assert json.loads(settings["after"]["value"])["IDLE_MINUTES"] == "41"
    instance = plan.change(harness.INSTANCE)
    assert instance["before"]["user_data_base64"] == instance["after"]["user_data_base64"]
    assert "user_data" not in changed_attributes(instance)


def test_a_new_instance_type_never_replaces_the_instance_and_its_disk(
    stack: harness.Stack,
) -> None:
    """The default subnet is chosen among the zones that offer instance_type, and a new subnet
    replaces the instance (its disk goes: delete_on_termination). A new instance_type (or a zone
    AWS starts offering it in) must not move the machine; the preflight says so instead."""
    ec2 = stack.client("ec2")
    zone = described_instance(stack)["Placement"]["AvailabilityZone"]
    default_zones = {subnet["AvailabilityZone"] for subnet in harness.default_subnets(ec2)}
    offered: dict[str, set[str]] = {}
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone"
    )
    for page in pages:
        for offer in page["InstanceTypeOfferings"]:
            offered.setdefault(offer["InstanceType"], set()).add(offer["Location"])
    elsewhere = sorted(
        name for name, zones in offered.items() if zone not in zones and zones & default_zones
    )
    assert elsewhere, f"moto offers every instance type in {zone}: the test needs one it doesn't"
    known = {
        t["InstanceType"]
        for t in ec2.describe_instance_types(InstanceTypes=elsewhere[:100])["InstanceTypes"]
    }
    new_type = next(name for name in elsewhere if name in known)
    result = harness.run_terraform(
        stack.module, "plan", "-input=false", "-no-color", "-out=moved.tfplan",
        f"-var=instance_type={new_type}", check=False,
    )  # fmt: skip
    message = one_line(result.output)
    assert "must be replaced" not in message and "forces replacement" not in message, message
    assert result.returncode == 1, result.output
    assert (
        f"The instance is in {zone}, which does not offer instance_type {new_type}. "
        "Terraform leaves the machine where it is"
    ) in message


def test_a_default_subnet_that_now_sorts_first_never_replaces_the_instance(
    stack: harness.Stack,
) -> None:
    """The default subnet is the first by id among the zones that offer instance_type. When that
    set changes under the same settings (AWS offers the type in one more zone; a default subnet is
    recreated), another subnet comes first: the instance and its disk must stay where they are."""
    ec2 = stack.client("ec2")
    instance = described_instance(stack)
    offered = harness.zones_offering(ec2, stack.variables["instance_type"])
    other = next(
        s
        for s in harness.default_subnets(ec2)
        if s["AvailabilityZone"] in offered and s["SubnetId"] != instance["SubnetId"]
    )
    zone, cidr, vpc = other["AvailabilityZone"], other["CidrBlock"], other["VpcId"]
    # A new default subnet in that zone (moto makes a zone's only subnet its default), until its
    # id sorts first: ids are random, and the instance's is the least of five.
    for _ in range(3000):
        ec2.delete_subnet(SubnetId=other["SubnetId"])
        other = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]
        if other["SubnetId"] < instance["SubnetId"]:
            break
    assert other["DefaultForAz"]
    assert other["SubnetId"] < instance["SubnetId"]
    plan = stack.plan()
    assert plan.changes().get(harness.INSTANCE, ["update"]) == ["update"], plan.output
    assert without_moto_difference(plan) == {}, plan.output


# --- 5. use what Terraform created --------------------------------------------------------------


@pytest.fixture
def lambda_environment(stack: harness.Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The Lambda's environment as moto reports it, set for the real handler, pointed at moto."""
    configuration = stack.client("lambda").get_function_configuration(
        FunctionName="jupyter-on-demand-start-link"
    )
    environment = configuration["Environment"]["Variables"]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    handler.client.cache_clear()
    handler.PASSWORDS.clear()
    yield environment
    handler.client.cache_clear()
    handler.PASSWORDS.clear()


def instance_state(stack: harness.Stack) -> str:
    return described_instance(stack)["State"]["Name"]


def test_the_start_link_starts_the_instance_terraform_created(
    stack: harness.Stack, lambda_environment: dict[str, str]
) -> None:
    assert lambda_environment["INSTANCE_ID"] == stack.instance_id
    stack.client("ec2").stop_instances(InstanceIds=[stack.instance_id])  # as the idle stop does
    assert instance_state(stack) == "stopped"
    status, body = call(event("/start", {"pass": harness.TEAM_PASS}))
    assert status == 200, body
    assert body["state"] == "pending"
    assert instance_state(stack) in ("pending", "running")


def test_the_start_link_refuses_a_wrong_password(
    stack: harness.Stack, lambda_environment: dict[str, str]
) -> None:
    status, _ = call(event("/start", {"pass": "not the team password"}))
    assert status == 403


def test_the_keep_awake_link_tags_the_instance_terraform_created_within_its_cap(
    stack: harness.Stack, lambda_environment: dict[str, str]
) -> None:
    """Issue 12: /v1/keep-awake with the Lambda's environment as Terraform set it (its cap)."""
    assert lambda_environment["MAX_KEEP_AWAKE_HOURS"] == "12"
    status, body = call(event("/keep-awake", {"pass": harness.TEAM_PASS, "hours": "13"}))
    assert (status, body["message"]) == (400, handler.OVER_CAP_MESSAGE.format(cap=12.0))
    status, body = call(event("/keep-awake", {"pass": harness.TEAM_PASS, "hours": "4"}))
    assert status == 200, body
    tags = {t["Key"]: t["Value"] for t in described_instance(stack)["Tags"]}
    request = idle.KeepAwake.parse(tags[idle.KEEP_AWAKE_TAG])
    assert request is not None
    assert body["kept_awake_until"] == body["idle"]["kept_awake_until"] == idle.iso(request.until)
    assert (request.until - request.set_at).total_seconds() == 4 * 3600


def bootstrap_env(stack: harness.Stack) -> dict[str, str]:
    """/etc/jupyter-on-demand/bootstrap.env as the user_data Terraform sent (read from moto)."""
    files = {f["path"]: f["content"] for f in yaml.safe_load(stack.user_data())["write_files"]}
    assert "/etc/jupyter-on-demand/config.env" not in files
    lines = files["/etc/jupyter-on-demand/bootstrap.env"].splitlines()
    return dict(line.split("=", 1) for line in lines if line)


@pytest.fixture
def instance_env(stack: harness.Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The instance's view: bootstrap.env from its user_data, and AWS (moto) behind it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    return bootstrap_env(stack)


def test_user_data_says_only_where_the_rest_is(instance_env: dict[str, str]) -> None:
    assert instance_env == {
        "AWS_REGION": "us-east-1",
        "BOOTSTRAP_PARAMETER_PREFIX": "/jupyter-on-demand/bootstrap",
    }


def test_the_instance_reads_back_its_code_byte_for_byte(instance_env: dict[str, str]) -> None:
    assert boot_sync.fetch_bundle(instance_env) == bundle_files()


def test_the_instance_reads_back_its_settings(
    stack: harness.Stack, instance_env: dict[str, str]
) -> None:
    assert boot_sync.fetch_settings(instance_env) == {
        "AWS_REGION": "us-east-1",
        "TEAM_PASS_PARAMETER": "/jupyter-on-demand/team-pass",
        "GITHUB_TOKEN_PARAMETER": "/jupyter-on-demand/github-token",
        "GITHUB_REPO_URL": "https://github.com/my-team/ml-notebooks.git",
        "GITHUB_USER_NAME": "my-team",
        "JUPYTER_PORT": "8443",
        "JUPYTER_TLS": "1",
        "IDLE_MINUTES": "40",
        "READY_TAG": handler.READY_TAG,
        "WARN_MINUTES": "5",
        "MAX_KEEP_AWAKE_HOURS": "12",
        "LONG_RUN_HOURS": "8",
        "NOTIFY_TOPIC_ARN": "",
        # locals.tf builds it from the API's id (the stage's invoke_url would be a cycle); the
        # start_url output is the stage's invoke_url + "/start": the same base.
        "PAGE_URL": stack.outputs["start_url"].removesuffix("/start"),
        "MARKET": "on-demand",
    }


def test_the_instance_reads_both_secrets_exactly(instance_env: dict[str, str]) -> None:
    settings = boot_sync.fetch_settings(instance_env)
    assert boot_secrets.fetch_secrets(settings) == (harness.TEAM_PASS, harness.GITHUB_TOKEN)


# --- 6. Issue 13: the cost options -------------------------------------------------------------
#
# Off by default: the stack above was applied without them. Then one apply that switches
# notifications on and sets an admin's price (moto serves SNS). The plan with all of them on, from
# no state, is in test_preflight.py.


def state_addresses(stack: harness.Stack) -> list[str]:
    listed = harness.run_terraform(stack.module, "state", "list")
    return listed.stdout.split()


def role_policy(stack: harness.Stack, role: str, name: str) -> dict[str, Any]:
    document = stack.client("iam").get_role_policy(RoleName=role, PolicyName=name)
    policy = document["PolicyDocument"]
    return json.loads(policy) if isinstance(policy, str) else policy


ROLE_POLICIES = [
    ("jupyter-on-demand-instance", "read-secrets-and-tag-itself"),
    ("jupyter-on-demand-start-link", "start-the-instance"),
]


def publish_statements(stack: harness.Stack) -> list[list[dict[str, Any]]]:
    """The sns statements of the instance's and the Lambda's policies, as IAM (moto) holds them."""
    return [
        [s for s in role_policy(stack, *names)["Statement"] if "sns" in json.dumps(s["Action"])]
        for names in ROLE_POLICIES
    ]


@pytest.fixture(scope="module")
def applied_state(stack: harness.Stack) -> dict[str, Any]:
    """`terraform show -json` of the state as first applied (the tests below run before
    `notified` applies again)."""
    return dict(json.loads(harness.run_terraform(stack.module, "show", "-json").stdout))


def test_by_default_no_topic_no_budget_no_publish_permission_and_on_demand(
    stack: harness.Stack, applied_state: dict[str, Any]
) -> None:
    addresses = state_addresses(stack)
    assert [a for a in addresses if "sns" in a or "budget" in a] == []
    assert "aws_instance.jupyter" in addresses
    assert publish_statements(stack) == [[], []]
    instance = described_instance(stack)
    assert "InstanceLifecycle" not in instance  # moto says "spot" for a spot instance
    resources = applied_state["values"]["root_module"]["resources"]
    jupyter = next(r for r in resources if r["address"] == harness.INSTANCE)
    assert jupyter["values"]["instance_market_options"] == []


def test_the_lambda_gets_the_list_price_of_the_type_in_the_region(
    lambda_environment: dict[str, str],
) -> None:
    """g4dn.4xlarge in us-east-1 from prices.tf: the contract's reference price."""
    assert lambda_environment["PRICE_PER_HOUR_USD"] == "1.204"
    assert lambda_environment["PRICE_NOTE"] == "list price"
    assert lambda_environment["NOTIFY_TOPIC_ARN"] == ""


def test_the_page_url_setting_is_the_stages_invoke_url(
    stack: harness.Stack, instance_env: dict[str, str], applied_state: dict[str, Any]
) -> None:
    api_id = stack.client("apigateway").get_rest_apis()["items"][0]["id"]
    stage = next(
        r for r in applied_state["values"]["root_module"]["resources"]
        if r["address"] == "aws_api_gateway_stage.v1"
    )  # fmt: skip
    page_url = boot_sync.fetch_settings(instance_env)["PAGE_URL"]
    assert page_url == stage["values"]["invoke_url"]
    assert page_url == f"https://{api_id}.execute-api.us-east-1.amazonaws.com/v1"


def test_the_disk_carries_the_stack_tag_the_budget_filters_on(stack: harness.Stack) -> None:
    """The budget counts what carries Stack = name_prefix: the disk bills every hour of the
    month, running or not, so it must carry the tag too, not only the instance."""
    volume_id = described_instance(stack)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = stack.client("ec2").describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
    assert tags.get("Stack") == "jupyter-on-demand", tags


@pytest.fixture(scope="module")
def notified(stack: harness.Stack) -> harness.Stack:
    """The applied stack after the admin adds notify_emails, long_run_hours and a price, and
    applies."""
    variables = stack.variables | {
        "notify_emails": harness.EMAILS,
        "long_run_hours": 6,
        "price_per_hour_usd": 0.45,
    }
    harness.write_variables(stack.module, variables)
    applied = harness.run_terraform(
        stack.module, "apply", "-auto-approve", "-input=false", "-no-color"
    )
    return harness.Stack(stack.module, stack.endpoint, variables, stack.outputs, applied.output)


def topic_arn(stack: harness.Stack) -> str:
    topics = stack.client("sns").list_topics()["Topics"]
    assert len(topics) == 1, topics
    return topics[0]["TopicArn"]


def test_switching_notifications_on_adds_the_topic_and_keeps_the_instance(
    notified: harness.Stack,
) -> None:
    # The topic and two subscriptions; the settings, the Lambda and both policies change in place.
    assert re.search(
        r"Apply complete! Resources: 3 added, \d+ changed, 0 destroyed\.", notified.apply_output
    ), notified.apply_output
    assert described_instance(notified)["InstanceId"] == notified.instance_id
    arn = topic_arn(notified)
    assert arn.endswith(":jupyter-on-demand-notify")
    attributes = notified.client("sns").get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == "alias/aws/sns"
    subscriptions = notified.client("sns").list_subscriptions_by_topic(TopicArn=arn)
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions["Subscriptions"]) == [
        ("email", email) for email in harness.EMAILS
    ]


def test_the_instance_and_the_lambda_get_the_topic_and_may_publish_only_to_it(
    notified: harness.Stack, instance_env: dict[str, str]
) -> None:
    arn = topic_arn(notified)
    settings = boot_sync.fetch_settings(instance_env)  # checks each setting's shape too
    assert (settings["NOTIFY_TOPIC_ARN"], settings["LONG_RUN_HOURS"]) == (arn, "6")
    configuration = notified.client("lambda").get_function_configuration(
        FunctionName="jupyter-on-demand-start-link"
    )
    assert configuration["Environment"]["Variables"]["NOTIFY_TOPIC_ARN"] == arn
    expected = {"Sid": "PublishNotifications", "Effect": "Allow", "Action": "sns:Publish"}
    for statements in publish_statements(notified):
        assert [{k: s[k] for k in expected} | {"Resource": s["Resource"]} for s in statements] == [
            expected | {"Resource": arn}
        ]


def test_an_admins_price_reaches_the_lambda_in_place_of_the_list_price(
    notified: harness.Stack,
) -> None:
    configuration = notified.client("lambda").get_function_configuration(
        FunctionName="jupyter-on-demand-start-link"
    )
    environment = configuration["Environment"]["Variables"]
    assert (environment["PRICE_PER_HOUR_USD"], environment["PRICE_NOTE"]) == (
        "0.45",
        "admin's price",
    )


def test_a_plan_after_switching_notifications_on_shows_no_changes(notified: harness.Stack) -> None:
    assert without_moto_difference(notified.plan()) == {}


# --- 7. destroy (last: the module's stack is gone after it) -------------------------------------


# What destroy must leave empty: (what, service, list call, key of the list, field that names).
LEFT_AFTER_DESTROY = [
    ("security groups", "ec2", "describe_security_groups", "SecurityGroups", "GroupName"),
    ("ssm parameters", "ssm", "describe_parameters", "Parameters", "Name"),
    ("lambda functions", "lambda", "list_functions", "Functions", "FunctionName"),
    ("rest apis", "apigateway", "get_rest_apis", "items", "name"),
    ("iam roles", "iam", "list_roles", "Roles", "RoleName"),
    (
        "instance profiles",
        "iam",
        "list_instance_profiles",
        "InstanceProfiles",
        "InstanceProfileName",
    ),
    ("log groups", "logs", "describe_log_groups", "logGroups", "logGroupName"),
    ("metric filters", "logs", "describe_metric_filters", "metricFilters", "filterName"),
    ("alarms", "cloudwatch", "describe_alarms", "MetricAlarms", "AlarmName"),
    ("sns topics", "sns", "list_topics", "Topics", "TopicArn"),
    ("sns subscriptions", "sns", "list_subscriptions", "Subscriptions", "SubscriptionArn"),
]


def names_in_moto(endpoint: str, service: str, call: str, key: str, field: str) -> list[str]:
    return [item[field] for item in getattr(harness.client(service, endpoint), call)()[key]]


def test_destroy_leaves_nothing_in_moto(stack: harness.Stack) -> None:
    stack.destroy()
    left = {what: names_in_moto(stack.endpoint, *where) for what, *where in LEFT_AFTER_DESTROY}
    # Only what the stack made counts: not the default VPC's group, nor roles under other names.
    left["security groups"] = [g for g in left["security groups"] if g != "default"]
    left["iam roles"] = [r for r in left["iam roles"] if r.startswith("jupyter-on-demand")]
    left["instances"] = [
        i["InstanceId"]
        for r in harness.client("ec2", stack.endpoint).describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert left == {name: [] for name in left}
    state = json.loads(harness.run_terraform(stack.module, "show", "-json").stdout)
    assert "resources" not in state.get("values", {}).get("root_module", {})
