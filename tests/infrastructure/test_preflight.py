"""The preflight, from no state: real Terraform plans (the real AWS provider, from the local mirror)
of the design note's variables against a moto server of this file's own, never applied.

Plans check what the admin hears before AWS says it (infrastructure/preflight.tf): the zone that
offers the instance type, the account's vCPU quota; and what the cost options would create.
test_apply.py applies the stack; the two files share no state, so pytest-xdist runs them side by
side.

moto differs from AWS in two places these plans meet, each asserted here as evidence:
- Service Quotas: moto serves only the `vpc` service code
  (test_moto_cannot_serve_the_ec2_vcpu_quota); a stub on loopback (stack.ServiceQuotasStub) stands in for AWS's GetServiceQuota;
- Budgets: moto can't read a budget's notifications back, so the budget is planned, never applied
  (test_moto_cannot_read_back_a_budgets_notifications).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.infrastructure import stack as harness
from tests.infrastructure.terraform import (
    INFRA,
    console_in_module,
    one_line,
    variable_block,
)

TOPIC = "aws_sns_topic.notify[0]"
BUDGET = "aws_budgets_budget.monthly[0]"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with harness.moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def planner(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the module, initialised, never applied: plans from no state."""
    module = harness.prepare(tmp_path_factory.mktemp("planner"), endpoint)
    harness.init(module)
    return module


def plan_from_scratch(
    module: Path, endpoint: str, quotas: dict[str, float] | None = None, **variables: Any
) -> harness.Result:
    """`terraform plan` of the design note's variables (and `variables` over them), from no state.

    `quotas`: the account's EC2 vCPU quotas, served by a ServiceQuotasStub for this plan only;
    None, a roomy account (stack.ROOMY_QUOTAS)."""
    harness.write_variables(module, harness.design_note_variables(endpoint) | variables)
    with contextlib.ExitStack() as stubs:
        quotas_endpoint = None
        if quotas is not None:
            quotas_endpoint = stubs.enter_context(harness.ServiceQuotasStub(quotas)).endpoint
        (module / harness.PROVIDER_OVERRIDE_FILE).write_text(
            harness.provider_override(endpoint, quotas_endpoint)
        )
        return harness.run_terraform(
            module, "plan", "-input=false", "-no-color", "-detailed-exitcode", check=False
        )


# --- Zones and quotas -----------------------------------------------------------------------


def test_moto_cannot_serve_the_ec2_vcpu_quota(endpoint: str) -> None:
    """Why stack.ServiceQuotasStub exists: moto knows no EC2 quota, and answers the fallback call
    the provider makes then with HTTP 500 (which the provider retries for minutes)."""
    quotas = boto3.client(
        "service-quotas",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as raised:
        quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA")
    assert raised.value.response["Error"]["Code"] == "NoSuchResourceException"
    with pytest.raises(ClientError) as raised:
        quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_a_gpu_vcpu_quota_too_small_is_said_plainly_at_plan_time(
    planner: Path, endpoint: str
) -> None:
    """Issue 10, point 3: a new account's G quota of 0 vCPUs; g4dn.4xlarge needs 16. A warning
    (check block), so the plan goes on: see infrastructure/preflight.tf for why."""
    result = plan_from_scratch(planner, endpoint, quotas={"L-DB2E81BA": 0.0})
    assert result.returncode == 2, result.output
    message = one_line(result.output)
    assert "Warning: Check block assertion failed" in message
    assert (
        'This account\'s EC2 quota "Running On-Demand G and VT instances" in us-east-1 is 0 vCPUs, '
        "and instance_type g4dn.4xlarge needs 16: AWS will refuse to start the instance "
        "(VcpuLimitExceeded)"
    ) in message
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 "
        "--quota-code L-DB2E81BA --desired-value 16 --region us-east-1"
    ) in message


def test_a_spot_quota_too_small_is_said_plainly_though_on_demand_has_room(
    planner: Path, endpoint: str
) -> None:
    """Issue 13: spot instances count against quotas of their own, 0 in a new account even where
    the on-demand one is fine; the preflight reads the spot one for market = "spot"."""
    quotas = {"L-DB2E81BA": 64.0, "L-3819A6DF": 0.0}
    result = plan_from_scratch(planner, endpoint, quotas=quotas, market="spot")
    assert result.returncode == 2, result.output
    message = one_line(result.output)
    assert (
        'This account\'s EC2 quota "All G and VT Spot Instance Requests" in us-east-1 is 0 vCPUs, '
        "and instance_type g4dn.4xlarge needs 16: AWS will refuse to start the instance "
        "(MaxSpotInstanceCountExceeded)"
    ) in message
    assert "--quota-code L-3819A6DF --desired-value 16 --region us-east-1" in message


def quota_console(folder: Path, instance_type: str, market: str) -> dict[str, str]:
    """local.vcpu_quota as preflight.tf computes it, in `terraform console` over a module of its
    locals block and the two variables they read (no provider, no plan)."""
    source = (INFRA / "preflight.tf").read_text()
    start = source.index("\nlocals {\n")
    block = source[start : source.index("\n}\n", start) + 3]
    module = variable_block("instance_type") + variable_block("market") + block
    tfvars = f'instance_type = "{instance_type}"\nmarket = "{market}"\n'
    result = console_in_module(folder, module, tfvars, "jsonencode(local.vcpu_quota)")
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    return dict(json.loads(json.loads(result.stdout)))


@pytest.mark.parametrize(
    ("instance_type", "market", "code"),
    [
        ("g4dn.4xlarge", "on-demand", "L-DB2E81BA"),
        ("vt1.3xlarge", "on-demand", "L-DB2E81BA"),
        ("p6-b200.48xlarge", "on-demand", "L-417A185B"),
        # Accelerators and families with quotas of their own, not the Standard one; the longer
        # prefix first (dl1 is DL, d3 Standard; inf2 Inf, i4i Standard; trn1 Trn, t3 Standard).
        ("dl1.24xlarge", "on-demand", "L-6E869C2A"),
        ("d3.xlarge", "on-demand", "L-1216C47A"),
        ("inf2.xlarge", "on-demand", "L-1945791B"),
        ("i4i.large", "on-demand", "L-1216C47A"),
        ("trn1.2xlarge", "on-demand", "L-2C3B7624"),
        ("t3.micro", "on-demand", "L-1216C47A"),
        ("hpc7g.4xlarge", "on-demand", "L-F7808C92"),
        ("f1.2xlarge", "on-demand", "L-74FC7D96"),
        ("x2idn.16xlarge", "on-demand", "L-7295265B"),
        ("u-6tb1.56xlarge", "on-demand", "L-43DA4232"),
        ("m5.large", "on-demand", "L-1216C47A"),
        # Spot has quotas of its own; a family without one (Trn, HPC) keeps its on-demand one.
        ("g4dn.4xlarge", "spot", "L-3819A6DF"),
        ("p6-b200.48xlarge", "spot", "L-7212CCBC"),
        ("m5.large", "spot", "L-34B43A08"),
        ("trn1.2xlarge", "spot", "L-2C3B7624"),
        ("hpc7g.4xlarge", "spot", "L-F7808C92"),
    ],
)
def test_each_instance_type_is_checked_against_its_familys_vcpu_quota(
    tmp_path: Path, instance_type: str, market: str, code: str
) -> None:
    assert quota_console(tmp_path, instance_type, market)["code"] == code


@pytest.mark.parametrize(
    ("instance_type", "code", "vcpus"),
    [("g4dn.4xlarge", "L-DB2E81BA", 16), ("m5.large", "L-1216C47A", 2)],
)
def test_a_quota_that_fits_gives_no_warning(
    planner: Path, endpoint: str, instance_type: str, code: str, vcpus: int
) -> None:
    """In a plan: the check reads the quota code of the type's family (the stub knows no other,
    and an unread quota warns) and compares it with the type's vCPUs (moto's)."""
    result = plan_from_scratch(
        planner, endpoint, quotas={code: float(vcpus)}, instance_type=instance_type
    )
    assert result.returncode == 2, result.output
    assert "Warning" not in result.output


def test_a_quota_that_cannot_be_read_leaves_the_plan_usable(planner: Path, endpoint: str) -> None:
    """An admin policy without servicequotas:GetServiceQuota, say: a warning naming the read."""
    result = plan_from_scratch(planner, endpoint, quotas={})
    assert result.returncode == 2, result.output
    message = one_line(result.output)
    assert "Warning:" in message and "L-DB2E81BA" in message


def test_an_instance_type_no_zone_offers_fails_at_plan_time(planner: Path, endpoint: str) -> None:
    """Issue 10, point 2: moto knows p5e.48xlarge but offers it in no zone of us-east-1."""
    result = plan_from_scratch(planner, endpoint, instance_type="p5e.48xlarge")
    assert result.returncode == 1
    assert (
        "No availability zone of us-east-1 offers instance_type p5e.48xlarge. "
        "Choose another instance_type or region"
    ) in one_line(result.output)


def test_a_subnet_in_a_zone_without_the_type_fails_at_plan_time(
    planner: Path, endpoint: str
) -> None:
    ec2 = harness.client("ec2", endpoint)
    subnet = ec2.describe_subnets(
        Filters=[
            {"Name": "availability-zone", "Values": ["us-east-1e"]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"][0]["SubnetId"]
    result = plan_from_scratch(planner, endpoint, subnet_id=subnet)
    assert result.returncode == 1
    assert (
        f"Subnet {subnet} is in us-east-1e, which does not offer instance_type g4dn.4xlarge. "
        "Set subnet_id to a subnet in one of: us-east-1a, us-east-1b, us-east-1c, us-east-1d, "
        "us-east-1f"
    ) in one_line(result.output)


def test_the_default_subnet_is_in_the_one_zone_that_offers_the_type(
    planner: Path, endpoint: str
) -> None:
    """p6-b200.48xlarge is offered in us-east-1b only (moto's data): 1 chance in 6 by luck."""
    result = plan_from_scratch(planner, endpoint, instance_type="p6-b200.48xlarge")
    assert result.returncode == 2, result.output
    shown = harness.run_terraform(planner, "plan", "-input=false", "-no-color", "-out=zone.tfplan")
    assert shown.returncode == 0
    plan = json.loads(harness.run_terraform(planner, "show", "-json", "zone.tfplan").stdout)
    instance = next(c for c in plan["resource_changes"] if c["address"] == harness.INSTANCE)
    subnet = instance["change"]["after"]["subnet_id"]
    ec2 = harness.client("ec2", endpoint)
    zone = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"]
    assert harness.zones_offering(ec2, "p6-b200.48xlarge") == [zone]


# --- Issue 13: the cost options, all on ---------------------------------------------------------
#
# test_apply.py applies the stack without them, then switches notifications on. Here one plan with
# notifications, a budget and spot. The budget is planned only: moto's Budgets lacks calls the
# provider makes to read one back (test_moto_cannot_read_back_a_budgets_notifications).


@pytest.fixture(scope="module")
def all_cost_options(planner: Path, endpoint: str) -> harness.Plan:
    """A plan from no state with notifications, a budget and spot."""
    harness.write_variables(
        planner,
        harness.design_note_variables(endpoint)
        | {"notify_emails": harness.EMAILS, "monthly_budget_usd": 300, "market": "spot"},
    )
    (planner / harness.PROVIDER_OVERRIDE_FILE).write_text(harness.provider_override(endpoint))
    result = harness.run_terraform(
        planner, "plan", "-input=false", "-no-color", "-out=costs.tfplan", check=False
    )
    assert result.returncode == 0, result.output
    shown = harness.run_terraform(planner, "show", "-json", "costs.tfplan")
    return harness.Plan(result.returncode, result.output, json.loads(shown.stdout))


def test_notifications_make_one_encrypted_topic_and_one_email_subscription_per_address(
    all_cost_options: harness.Plan,
) -> None:
    created = {a for a, actions in all_cost_options.changes().items() if actions == ["create"]}
    assert {a for a in created if "sns" in a} == {
        TOPIC,
        *(f'aws_sns_topic_subscription.email["{email}"]' for email in harness.EMAILS),
    }
    topic = all_cost_options.change(TOPIC)["after"]
    assert (topic["name"], topic["kms_master_key_id"]) == (
        "jupyter-on-demand-notify",
        "alias/aws/sns",
    )
    for email in harness.EMAILS:
        subscription = all_cost_options.change(f'aws_sns_topic_subscription.email["{email}"]')
        assert (subscription["after"]["protocol"], subscription["after"]["endpoint"]) == (
            "email",
            email,
        )


def test_the_budget_counts_this_stacks_tag_and_alerts_at_80_100_and_forecast_100(
    all_cost_options: harness.Plan,
) -> None:
    assert all_cost_options.changes()[BUDGET] == ["create"]
    budget = all_cost_options.change(BUDGET)["after"]
    assert (budget["budget_type"], budget["time_unit"]) == ("COST", "MONTHLY")
    assert (budget["limit_amount"], budget["limit_unit"]) == ("300", "USD")
    assert budget["cost_filter"] == [
        {"name": "TagKeyValue", "values": ["user:Stack$jupyter-on-demand"]}
    ]
    alerts = sorted(
        (n["notification_type"], n["threshold"], n["threshold_type"], n["comparison_operator"])
        for n in budget["notification"]
    )
    assert alerts == [
        ("ACTUAL", 80, "PERCENTAGE", "GREATER_THAN"),
        ("ACTUAL", 100, "PERCENTAGE", "GREATER_THAN"),
        ("FORECASTED", 100, "PERCENTAGE", "GREATER_THAN"),
    ]
    assert [sorted(n["subscriber_email_addresses"]) for n in budget["notification"]] == [
        harness.EMAILS
    ] * 3


def test_spot_is_a_persistent_request_that_stops_on_interruption(
    all_cost_options: harness.Plan,
) -> None:
    instance = all_cost_options.change(harness.INSTANCE)["after"]
    assert instance["instance_market_options"] == [
        {
            "market_type": "spot",
            "spot_options": [
                {"spot_instance_type": "persistent", "instance_interruption_behavior": "stop"}
            ],
        }
    ]


def test_moto_cannot_read_back_a_budgets_notifications(endpoint: str) -> None:
    """Why the budget is planned, never applied, here: the provider reads a budget's alerts
    back with DescribeSubscribersForNotification and its tags with ListTagsForResource, and
    moto's Budgets answers both with HTTP 500 (it implements neither)."""
    budgets = boto3.client(
        "budgets",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as raised:
        budgets.describe_subscribers_for_notification(
            AccountId="123456789012",
            BudgetName="any",
            Notification={
                "NotificationType": "ACTUAL",
                "ComparisonOperator": "GREATER_THAN",
                "Threshold": 80,
            },
        )
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError) as raised:
        budgets.list_tags_for_resource(ResourceARN="arn:aws:budgets::123456789012:budget/any")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
