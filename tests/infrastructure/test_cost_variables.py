"""Issue 13's variables: market, price_per_hour_usd (and the list-price table in prices.tf),
notify_emails, long_run_hours and monthly_budget_usd.

Validations and the price lookup run in the real `terraform console`, in a scratch module holding
the variable blocks exactly as variables.tf declares them (and prices.tf as it is): no provider
needed. What the plan and the apply make of them (the topic, the budget, spot, the Lambda's price)
is in test_apply.py and test_preflight.py, against moto.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infrastructure.terraform import (
    INFRA,
    TFVARS_EXAMPLE,
    accepted,
    console_in_module,
    console_with_variable,
    refusal,
    tfvars_example,
    unwrap,
    variable_block,
    variables,
)

PRICES = INFRA / "prices.tf"


def console(folder: Path, names: list[str], tfvars: str, expression: str) -> object:
    """`terraform console` printing `expression` in a module of those variables (and prices.tf)."""
    shutil.copyfile(PRICES, folder / "prices.tf")
    module = "".join(variable_block(name) for name in names)
    return accepted(console_in_module(folder, module, tfvars, f"jsonencode({expression})"))


# --- Off by default, and in the example ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "default", "example"),
    [
        ("market", "on-demand", '"spot"'),
        ("price_per_hour_usd", None, "0.45"),
        ("notify_emails", [], '["alice@example.com", "bob@example.com"]'),
        ("long_run_hours", 8, None),
        ("monthly_budget_usd", None, "300"),
    ],
)
def test_each_option_is_off_by_default_and_the_example_shows_it_and_a_value(
    name: str, default: object, example: str | None
) -> None:
    assert unwrap(variables()[name]["default"]) == default
    assert tfvars_example()[name] == default
    if example is not None:
        assert f"\n# {name} = {example}\n" in TFVARS_EXAMPLE.read_text()


def test_the_descriptions_say_what_switching_market_and_the_budget_tag_need() -> None:
    market = unwrap(variables()["market"]["description"])
    assert "replaces the instance" in market and "new disk" in market and "GitHub" in market
    budget = unwrap(variables()["monthly_budget_usd"]["description"])
    assert "cost allocation tag" in budget and "Stack" in budget
    price = unwrap(variables()["price_per_hour_usd"]["description"])
    assert "hours only" in price and "prices.tf" in price


# --- Validations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["on-demand", "spot"])
def test_market_takes_on_demand_or_spot(tmp_path: Path, value: str) -> None:
    assert accepted(console_with_variable(tmp_path, "market", f'market = "{value}"\n')) == value


@pytest.mark.parametrize("value", ["spot-fleet", "ondemand", "Spot", ""])
def test_market_refuses_anything_else_saying_what_to_type(tmp_path: Path, value: str) -> None:
    message = refusal(console_with_variable(tmp_path, "market", f'market = "{value}"\n'))
    assert 'market must be "on-demand" or "spot".' in message


@pytest.mark.parametrize("value", [0, -1])
def test_long_run_hours_must_be_positive(tmp_path: Path, value: int) -> None:
    result = console_with_variable(tmp_path, "long_run_hours", f"long_run_hours = {value}\n")
    assert "long_run_hours must be a positive number of hours, such as 8." in refusal(result)


def test_price_per_hour_usd_refuses_a_negative_price(tmp_path: Path) -> None:
    result = console_with_variable(tmp_path, "price_per_hour_usd", "price_per_hour_usd = -0.5\n")
    assert "price_per_hour_usd must be null (the list price) or an amount" in refusal(result)


@pytest.mark.parametrize(
    "emails", [[], ["alice@example.com"], ["a.b+jod@team.example.co.uk", "bob@example.com"]]
)
def test_notify_emails_takes_addresses(tmp_path: Path, emails: list[str]) -> None:
    result = console_with_variable(
        tmp_path, "notify_emails", f"notify_emails = {json.dumps(emails)}\n"
    )
    assert accepted(result) == emails


def test_notify_emails_names_what_is_no_address(tmp_path: Path) -> None:
    emails = ["alice@example.com", "bob at example.com", "carol@localhost"]
    result = console_with_variable(
        tmp_path, "notify_emails", f"notify_emails = {json.dumps(emails)}\n"
    )
    message = refusal(result)
    assert "notify_emails must be email addresses" in message
    assert "these are not: bob at example.com, carol@localhost." in message


@pytest.mark.parametrize(
    "emails",
    [[f"user{i}@example.com" for i in range(11)], ["alice@example.com", "alice@example.com"]],
    ids=["eleven", "twice"],
)
def test_notify_emails_keeps_to_what_aws_budgets_takes(tmp_path: Path, emails: list[str]) -> None:
    result = console_with_variable(
        tmp_path, "notify_emails", f"notify_emails = {json.dumps(emails)}\n"
    )
    assert "notify_emails may list at most 10 addresses" in refusal(result)


def console_with_budget(folder: Path, tfvars: str) -> subprocess.CompletedProcess[str]:
    module = variable_block("monthly_budget_usd") + variable_block("notify_emails")
    return console_in_module(folder, module, tfvars, "jsonencode(var.monthly_budget_usd)")


def test_a_budget_with_addresses_is_accepted(tmp_path: Path) -> None:
    result = console_with_budget(
        tmp_path, 'monthly_budget_usd = 300\nnotify_emails = ["alice@example.com"]\n'
    )
    assert accepted(result) == 300


def test_a_budget_without_addresses_is_refused_saying_it_needs_notify_emails(
    tmp_path: Path,
) -> None:
    message = refusal(console_with_budget(tmp_path, "monthly_budget_usd = 300\n"))
    assert "monthly_budget_usd needs notify_emails" in message


@pytest.mark.parametrize("value", [0, -50])
def test_a_budget_must_be_positive(tmp_path: Path, value: int) -> None:
    tfvars = f'monthly_budget_usd = {value}\nnotify_emails = ["alice@example.com"]\n'
    message = refusal(console_with_budget(tmp_path, tfvars))
    assert "monthly_budget_usd must be null (no budget) or a positive amount" in message


# --- The price behind the estimate (prices.tf) -----------------------------------------------------

PRICE_VARIABLES = ["region", "instance_type", "price_per_hour_usd"]
PRICE_EXPRESSION = "[local.price_per_hour_usd, local.price_note]"


@pytest.mark.parametrize(
    ("tfvars", "expected"),
    [
        # The contract's reference prices (us-east-1, Linux, on demand).
        ('region = "us-east-1"\n', ["1.204", "list price"]),  # the default g4dn.4xlarge
        ('region = "us-east-1"\ninstance_type = "g4dn.xlarge"\n', ["0.526", "list price"]),
        ('region = "eu-central-1"\ninstance_type = "g6.xlarge"\n', ["1.0064", "list price"]),
        # The admin's price wins, in a region the table has or not, and may be 0 (credits).
        ('region = "us-east-1"\nprice_per_hour_usd = 0.45\n', ["0.45", "admin's price"]),
        ('region = "ap-south-1"\nprice_per_hour_usd = 0.3\n', ["0.3", "admin's price"]),
        ('region = "us-east-1"\nprice_per_hour_usd = 0\n', ["0", "admin's price"]),
        # Unknown: hours only on the page.
        ('region = "us-east-1"\ninstance_type = "p5.48xlarge"\n', ["", ""]),
        ('region = "ap-south-1"\n', ["", ""]),
        ('region = "eu-west-1"\ninstance_type = "g6.xlarge"\n', ["", ""]),  # not offered there
    ],
    ids=[
        "default-type",
        "g4dn.xlarge",
        "other-region",
        "admins-price",
        "admins-price-unknown-region",
        "admins-price-zero",
        "unknown-type",
        "unknown-region",
        "no-row",
    ],
)
def test_the_price_is_the_admins_else_the_list_price_else_none(
    tmp_path: Path, tfvars: str, expected: list[str]
) -> None:
    assert console(tmp_path, PRICE_VARIABLES, tfvars, PRICE_EXPRESSION) == expected


def test_the_table_covers_the_issues_types_and_regions(tmp_path: Path) -> None:
    table = console(tmp_path, PRICE_VARIABLES, 'region = "us-east-1"\n', "local.on_demand_prices")
    assert isinstance(table, dict)
    types = ["g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge", "g5.xlarge", "g5.2xlarge"]
    for region in ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1"):
        assert set(types) <= set(table[region]), region
        assert all(0 < price < 5 for price in table[region].values())
    assert table["us-east-1"]["g6.xlarge"] == table["us-west-2"]["g6.xlarge"] == 0.8048


def test_the_table_names_its_source_and_when_it_was_taken() -> None:
    text = PRICES.read_text()
    assert "https://aws.amazon.com/ec2/pricing/on-demand/" in text
    assert "AWS Price List API" in text
    assert re.search(r"on 20\d\d-\d\d-\d\d", text)


def test_the_readmes_cost_table_agrees_with_the_price_table_and_the_page(tmp_path: Path) -> None:
    """The README's per-type rows: the list price is prices.tf's, always on is 730 h of it, and
    the page's example month (37.2 h) costs what the start page says for it."""
    from decimal import ROUND_HALF_UP, Decimal

    from cost import Month

    readme = (INFRA.parent / "README.md").read_text()
    table = readme.split("<!-- cost-table -->", 1)[1].split("<!-- /cost-table -->", 1)[0]
    rows = re.findall(r"^\| (\S+) \| \$([\d.]+) \| \$([\d.]+) \| \$([\d.]+) \|", table, re.M)
    assert len(rows) >= 3, table
    prices = console(tmp_path, PRICE_VARIABLES, 'region = "us-east-1"\n', "local.on_demand_prices")
    assert isinstance(prices, dict)
    for instance_type, listed, always_on, example in rows:
        price = prices["us-east-1"][instance_type]
        assert float(listed) == price, instance_type
        month = Decimal(repr(price)) * 730
        assert Decimal(always_on) == month.quantize(Decimal("0.01"), ROUND_HALF_UP), instance_type
        page = Month("2026-11", 37.2, price, "list price")
        assert float(example) == page.estimated_cost_usd, instance_type
    issue = Month("2026-11", 37.2, prices["us-east-1"]["g4dn.4xlarge"], "list price")
    assert issue.line() == "This month: 37.2 h running ≈ $44.79 (list price)."
    assert issue.line()[:-1] in readme.replace("\n", " ")  # the README quotes the page
