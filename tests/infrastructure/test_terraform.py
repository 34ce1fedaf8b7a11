"""What `terraform validate` would check, run offline: format, schema, references, variables."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

import layout
from tests.infrastructure import provider_schema
from tests.infrastructure.stack import DESIGN_NOTE_VARIABLES
from tests.infrastructure.terraform import (
    BOOTSTRAP_FILESET,
    INFRA,
    LABEXTENSION_FILESET,
    META_ARGUMENTS,
    USER_DATA_FILES,
    blocks,
    expressions,
    locals_,
    parsed,
    resource,
    terraform,
    tfvars_example,
    unwrap,
    variables,
)

PROVIDERS = ("aws", "archive")
SECRET_VARIABLES = ("team_pass", "github_access_token")


def test_terraform_fmt_is_clean() -> None:
    result = subprocess.run(
        [terraform(), "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive infrastructure`:\n{result.stdout}"
    )


def schema_of(kind: str, type_name: str) -> dict[str, Any] | None:
    provider = type_name.split("_", 1)[0]
    if provider not in PROVIDERS:
        return None
    return provider_schema.load(provider)[kind].get(type_name)


def check_block(body: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    errors = []
    present = set()
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if key == "dynamic":
            for dynamic in value:
                for name, spec in dynamic.items():
                    nested = schema["attributes"].get(name)
                    if nested is None:
                        errors.append(f"{where}: dynamic {name!r} is not a block of this type")
                        continue
                    present.add(name)
                    for content in spec.get("content", []):
                        errors += check_block(content, nested, f"{where}.{name}")
            continue
        if key in META_ARGUMENTS:
            continue
        if key not in schema["attributes"]:
            errors.append(f"{where}: unknown argument or block {key!r}")
            continue
        present.add(key)
        nested = schema["attributes"][key]
        if nested is not None:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    errors += check_block(item, nested, f"{where}.{key}")
    errors += [
        f"{where}: required argument {name!r} is not set"
        for name in schema["required"]
        if name not in present
    ]
    return errors


@pytest.mark.parametrize("kind", ["resource", "data"])
def test_every_type_argument_and_block_exists_in_the_provider_schema(kind: str) -> None:
    errors = []
    checked = 0
    for type_name, name, body in blocks(kind):
        schema = schema_of(kind, type_name)
        if schema is None:
            errors.append(f"{kind} {type_name}.{name}: no such type in providers {PROVIDERS}")
            continue
        errors += check_block(body, schema, f"{kind} {type_name}.{name}")
        checked += 1
    assert checked > 0
    assert errors == []


def test_the_schema_check_catches_a_misspelt_argument_and_a_missing_required_one() -> None:
    schema = schema_of("resource", "aws_ssm_parameter")
    assert schema is not None
    errors = check_block({"name": ["x"], "vlaue": ["y"]}, schema, "r")
    assert "r: unknown argument or block 'vlaue'" in errors
    assert "r: required argument 'type' is not set" in errors


def declared() -> dict[str, set[str]]:
    return {
        "var": set(variables()),
        "local": set(locals_()),
        "data": {f"{t}.{n}" for t, n, _ in blocks("data")},
        "resource": {f"{t}.{n}" for t, n, _ in blocks("resource")},
        "module": {name for name, _, _ in blocks("module")},
    }


REFERENCE = re.compile(
    r"(?<![\w.])(?:(var|local|module)\.(\w+)|data\.(\w+\.\w+)|((?:aws|archive)_\w+\.\w+))"
)


def references() -> list[tuple[str, str, str]]:
    found = []
    for filename, tree in parsed().items():
        for expression in expressions(tree):
            for match in REFERENCE.finditer(expression):
                kind, name, data, resource = match.groups()
                if kind:
                    found.append((filename, kind, name))
                elif data:
                    found.append((filename, "data", data))
                else:
                    found.append((filename, "resource", resource))
    return found


def test_every_reference_resolves_to_something_declared() -> None:
    known = declared()
    refs = references()
    assert len(refs) > 50
    unresolved = [f"{f}: {kind} {name}" for f, kind, name in refs if name not in known[kind]]
    assert unresolved == []


def test_every_variable_and_local_is_used() -> None:
    used = {(kind, name) for _, kind, name in references()}
    unused = [f"var.{v}" for v in variables() if ("var", v) not in used]
    unused += [f"local.{v}" for v in locals_() if ("local", v) not in used]
    assert unused == []


def test_every_variable_has_a_type_and_a_description() -> None:
    missing = [
        name
        for name, body in variables().items()
        if "type" not in body or not unwrap(body.get("description"))
    ]
    assert missing == []


@pytest.mark.parametrize(
    "name",
    [
        "allowed_ips",
        "ami",
        "api_throttle_burst_limit",
        "api_throttle_rate_limit",
        "fallback_instance_types",
        "github_access_token",
        "github_repo_name",
        "github_user_name",
        "idle_minutes",
        "instance_type",
        "jupyter_port",
        "lambda_reserved_concurrency",
        "log_retention_days",
        "long_run_hours",
        "market",
        "max_keep_awake_hours",
        "monthly_budget_usd",
        "name_prefix",
        "notify_emails",
        "price_per_hour_usd",
        "region",
        "root_volume_size",
        "secrets_version",
        "subnet_id",
        "tags",
        "team_pass",
        "waf_rate_limit_per_ip",
        "warn_minutes",
    ],
)
def test_variables_with_a_shape_are_validated_with_a_helpful_message(name: str) -> None:
    validation = variables()[name].get("validation")
    assert validation, f"variable {name} has no validation block"
    assert len(unwrap(validation[0]["error_message"])) > 20


@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_secret_variables_are_sensitive(name: str) -> None:
    assert unwrap(variables()[name]["sensitive"]) is True


def test_variables_and_outputs_are_alphabetical() -> None:
    assert list(variables()) == sorted(variables())
    outputs = [name for name, _, _ in blocks("output")]
    assert outputs == sorted(outputs)


def test_the_design_note_variables_are_accepted_under_their_names() -> None:
    assert DESIGN_NOTE_VARIABLES <= set(variables())
    assert unwrap(variables()["instance_type"]["default"]) == "g4dn.4xlarge"


def test_tfvars_example_lists_exactly_the_declared_variables() -> None:
    assert set(tfvars_example()) == set(variables())


def test_secrets_only_reach_ssm_write_only_and_the_sensitive_output() -> None:
    for filename, tree in parsed().items():
        if filename == "variables.tf":
            continue
        for secret in SECRET_VARIABLES:
            uses = [e for e in expressions(tree) if f"var.{secret}" in e]
            if filename == "ssm.tf":
                assert uses == [f"var.{secret}"] or not uses
            elif filename == "outputs.tf" and secret == "team_pass":
                outputs = {name: body for name, _, body in blocks("output")}
                for name, body in outputs.items():
                    if any(f"var.{secret}" in e for e in expressions(body)):
                        assert unwrap(body.get("sensitive")) is True, name
            else:
                assert uses == [], f"{filename} uses var.{secret}"
    ssm = {
        name: body
        for t, name, body in blocks("resource")
        if t == "aws_ssm_parameter" and name in ("team_pass", "github_token")
    }
    assert {unwrap(b["type"]) for b in ssm.values()} == {"SecureString"}
    assert all("value" not in b and "value_wo" in b for b in ssm.values())


def test_the_tests_render_user_data_and_the_bundle_exactly_as_locals_tf_does() -> None:
    """tests/infrastructure/terraform.py mirrors these expressions; keep both sides in step."""
    files = unwrap(locals_()["bootstrap_files"])
    assert files.replace(" ", "") == (  # python-hcl2 drops some spaces
        f'${{setunion(fileset(local.bootstrap_dir,"{BOOTSTRAP_FILESET}"),'
        f'fileset(local.bootstrap_dir,"{LABEXTENSION_FILESET}"))}}'
    )
    bundle = unwrap(locals_()["bootstrap_bundle"])
    assert "for name in local.bootstrap_files" in bundle
    assert "base64gzip(jsonencode(" in bundle
    chunk = layout.BUNDLE_CHUNK_CHARS
    assert f"range(0,length(local.bootstrap_bundle),{chunk})" in unwrap(
        locals_()["bootstrap_chunks"]
    ).replace(" ", "")
    assert unwrap(locals_()["user_data_files"]) == list(USER_DATA_FILES)
    assert unwrap(locals_()["user_data_units"]) == list(layout.USER_DATA_UNITS)
    user_data = unwrap(locals_()["user_data"])
    assert "local.user_data_files" in user_data and "local.user_data_units" in user_data
    assert "'bootstrap_env': '${local.bootstrap_env}'" in user_data
    assert tuple(unwrap(locals_()["bootstrap_env"])) == layout.BOOTSTRAP_KEYS
    assert set(unwrap(locals_()["instance_config"])) == set(layout.SETTINGS)


def test_user_data_carries_only_where_the_settings_are_never_the_settings_themselves() -> None:
    """Issue 10, point 5: a change of idle_minutes, jupyter_port, jupyter_tls or the GitHub repo
    must not change user_data; they travel in the SSM parameter <prefix>/settings instead."""
    user_data = unwrap(locals_()["user_data"])
    assert "instance_config" not in user_data and "var." not in user_data
    bootstrap_env = str(unwrap(locals_()["bootstrap_env"]))
    assert "var." not in bootstrap_env
    settings = resource("aws_ssm_parameter", "settings")
    assert unwrap(settings["name"]) == "${local.bootstrap_parameter_prefix}/settings"
    assert unwrap(settings["value"]) == "${jsonencode(local.instance_config)}"
    assert (unwrap(settings["type"]), unwrap(settings["tier"])) == ("String", "Standard")


def test_instance_is_hardened_and_survives_later_applies() -> None:
    instance = resource("aws_instance", "jupyter")
    assert unwrap(instance["metadata_options"])["http_tokens"] == ["required"]
    root = unwrap(instance["root_block_device"])
    assert root["encrypted"] == [True] and root["volume_type"] == ["gp3"]
    assert unwrap(instance["instance_initiated_shutdown_behavior"]) == "stop"
    assert unwrap(instance["user_data_replace_on_change"]) is False
    assert "base64gzip(local.user_data)" in unwrap(instance["user_data_base64"])
    ignored = unwrap(unwrap(instance["lifecycle"])["ignore_changes"])
    assert "${ami}" in ignored
    assert unwrap(variables()["root_volume_size"]["default"]) >= 100


def test_security_group_rules_are_scoped_to_allowed_ips_and_described() -> None:
    rules = [(t, n, b) for t, n, b in blocks("resource") if t.startswith("aws_vpc_security_group_")]
    assert rules
    for type_name, name, body in rules:
        assert unwrap(body.get("description")), f"{type_name}.{name} has no description"
        if type_name.endswith("ingress_rule"):
            assert unwrap(body["cidr_ipv4"]) == "${each.value}"
            assert unwrap(body["for_each"]) == "${toset(var.allowed_ips)}"
    ports = {unwrap(b["from_port"]) for t, _, b in rules if t.endswith("ingress_rule")}
    assert ports == {22, "${var.jupyter_port}"}


def test_api_stage_throttles_logs_without_query_strings_and_has_no_data_trace() -> None:
    settings = unwrap(resource("aws_api_gateway_method_settings", "all")["settings"])
    assert settings["data_trace_enabled"] == [False]
    assert "throttling_rate_limit" in settings and "throttling_burst_limit" in settings
    stage = resource("aws_api_gateway_stage", "v1")
    log_format = unwrap(unwrap(stage["access_log_settings"])["format"])
    assert "$context.resourcePath" in log_format
    assert "querystring" not in log_format.lower()
    assert unwrap(resource("aws_lambda_permission", "api")["source_arn"]).startswith(
        "${aws_api_gateway_rest_api.this.execution_arn}/"
    )


def test_lambda_runtime_log_retention_and_reserved_concurrency() -> None:
    function = resource("aws_lambda_function", "start_link")
    runtime = unwrap(function["runtime"])
    assert re.fullmatch(r"python3\.(1[2-9]|[2-9]\d)", runtime)
    assert "reserved_concurrent_executions" in function
    assert unwrap(resource("aws_cloudwatch_log_group", "lambda")["retention_in_days"])


def test_required_outputs_exist_and_only_the_password_one_is_sensitive() -> None:
    outputs = {name: body for name, _, body in blocks("output")}
    assert {"start_url", "start_url_with_password", "instance_id", "ssh_command"} <= set(outputs)
    assert unwrap(outputs["start_url_with_password"]["sensitive"]) is True
    assert "var.identity_file_path" in unwrap(outputs["ssh_command"]["value"])
    assert "pass" not in unwrap(outputs["start_url"]["value"])


def required_providers() -> dict[str, tuple[str, str]]:
    """provider name => (file, version constraint), over every terraform block."""
    found = {}
    for filename, tree in parsed().items():
        for block in tree.get("terraform", []):
            for name, spec in unwrap(block.get("required_providers", [{}])).items():
                found[name] = (filename, unwrap(spec)["version"])
    return found


def test_aws_provider_is_5_100_up_to_7_and_tags_are_set_once() -> None:
    """5.100 is what the offline mirror holds and test_apply.py applies; 6.x what admins get."""
    assert required_providers()["aws"] == ("versions.tf", ">= 5.100, < 7.0")
    provider = parsed()["providers.tf"]["provider"][0]["aws"]
    assert "default_tags" in provider


def test_the_module_has_one_required_providers_block() -> None:
    """Terraform refuses a second one ("Duplicate required providers configuration") at init: the
    archive provider once sat in lambda_package.tf, which the tests replace, so only an admin's
    `terraform init` saw it."""
    blocks = [
        name
        for name, tree in parsed().items()
        for block in tree.get("terraform", [])
        if "required_providers" in block
    ]
    assert blocks == ["versions.tf"]


def test_the_archive_provider_has_an_upper_bound_and_is_used_only_in_the_lambda_package_seam() -> (
    None
):
    filename, version = required_providers()["archive"]
    assert filename == "versions.tf"
    assert re.fullmatch(r">= ?2\.\d+, ?< ?3\.0", version), version
    users = {f for f, tree in parsed().items() if "archive_" in json.dumps(tree.get("data", []))}
    assert users == {"lambda_package.tf"}
    function = resource("aws_lambda_function", "start_link")
    assert unwrap(function["filename"]) == "${local.lambda_package.path}"
    assert unwrap(function["source_code_hash"]) == "${local.lambda_package.base64sha256}"


def test_only_attributes_of_aws_region_that_exist_in_both_5_x_and_6_x_are_read() -> None:
    """`region` is 6.x-only and `name` is deprecated in 6.x; `id` is the region's name in both."""
    used = set()
    for tree in parsed().values():
        for expression in expressions(tree):
            used |= set(re.findall(r"data\.aws_region\.current\.(\w+)", expression))
    assert used == {"id"}


def test_lambda_reserves_no_concurrency_by_default_so_a_new_account_accepts_it() -> None:
    """A new account's concurrency quota is 10, and AWS keeps 10 unreserved: any reservation is
    refused there. -1 means no reservation."""
    # checkov's hcl2 reads a negative number as the expression "${-1}".
    assert unwrap(variables()["lambda_reserved_concurrency"]["default"]) in (-1, "${-1}")
    assert tfvars_example()["lambda_reserved_concurrency"] in (-1, "${-1}")


def test_the_instance_is_created_after_everything_it_reads_at_boot() -> None:
    """Issue 10, point 4: its role's policy, its profile, and every SSM parameter (bundle chunks,
    manifest, settings, both secrets); first boot's installer doesn't wait for them."""
    depends_on = set(unwrap(resource("aws_instance", "jupyter")["depends_on"]))
    parameters = {
        f"${{aws_ssm_parameter.{name}}}"
        for t, name, _ in blocks("resource")
        if t == "aws_ssm_parameter"
    }
    assert len(parameters) == 5
    assert (
        parameters
        | {
            "${aws_iam_role_policy.instance}",
            "${aws_iam_instance_profile.instance}",
        }
        <= depends_on
    )


def test_no_literal_ami_account_or_region_in_resources() -> None:
    for filename, tree in parsed().items():
        if filename in ("variables.tf", "providers.tf"):
            continue
        text = " ".join(str(s) for s in tree.get("resource", []))
        assert not re.search(
            r"ami-[0-9a-f]{8}|\b\d{12}\b|(us|eu|ap)-(east|west|central|north|south)-\d", text
        ), filename
