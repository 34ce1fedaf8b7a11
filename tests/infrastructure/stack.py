"""The real stack, applied by real Terraform with the real AWS provider against a moto server.

Reusable: tests/infrastructure/test_apply.py and test_preflight.py drive it,
bench/terraform_apply.py times it, and the VM acceptance test can boot the user_data exactly as Terraform sent it:

    with moto_server() as endpoint:
        stack = apply(tmp_path, endpoint, design_note_variables(endpoint) | {"idle_minutes": 1})
        user_data = stack.user_data()   # read back from moto (DescribeInstanceAttribute)
        ...
        stack.destroy()

The module is a copy of infrastructure/ in <workdir>/infrastructure, next to symlinks to the real
ec2_bootstrap/ and lambda_src/ (the module reads them through "${path.module}/../"). Two files
differ from what admins run, both written here:

- lambda_package.tf: the archive provider is not in the offline mirror, so the copy defines
  local.lambda_package for a zip built here from lambda_src/ (infrastructure/lambda_package.tf
  explains the seam);
- providers_override.tf: every AWS API the stack calls goes to the moto server, with fake static
  credentials instead of the admin's credentials_profile.

The AWS provider comes from a local filesystem mirror (`terraform init -plugin-dir`), found in
$JOD_TF_PLUGIN_DIR or /opt/tf-plugins; without one, or without terraform, everything here fails
with a message saying how to get it. Nothing is ever skipped.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import boto3

from tests.support.locks import cache_lock

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infrastructure"
LAMBDA_SRC = ROOT / "lambda_src"
CACHE = ROOT / ".cache" / "terraform"
PLUGIN_DIR_ENV = "JOD_TF_PLUGIN_DIR"
DEFAULT_PLUGIN_DIR = Path("/opt/tf-plugins")
REGION = "us-east-1"
# Replaced by this harness in the copy (see the module docstring).
LAMBDA_PACKAGE_FILE = "lambda_package.tf"
VERSIONS_FILE = "versions.tf"
ARCHIVE_REQUIREMENT = re.compile(r"\n *archive = \{[^}]*\}")


def without_archive(versions: str) -> str:
    """versions.tf without the archive provider's requirement (not in the offline mirror)."""
    copy, count = ARCHIVE_REQUIREMENT.subn("", versions)
    assert count == 1, f"no archive requirement to drop in {VERSIONS_FILE}"
    return copy


PROVIDER_OVERRIDE_FILE = "providers_override.tf"
# Every AWS service the stack's resources and data sources call (provider endpoint names).
SERVICES = (
    "apigateway",
    "budgets",
    "cloudwatch",
    "ec2",
    "iam",
    "lambda",
    "logs",
    "servicequotas",
    "sns",
    "ssm",
    "sts",
    "wafv2",
)
TEAM_PASS = "correct horse battery staple"
GITHUB_TOKEN = "github_pat_" + "0123456789abcdefghij" * 3
KEY_NAME = "team-key"
# The EC2 vCPU quotas the preflight reads (infrastructure/preflight.tf), as a grown-up account has
# them. On demand: G and VT, P, Standard, and DL, HPC, Inf, Trn, F, X, High Memory.
ROOMY_QUOTAS = {
    "L-DB2E81BA": 64.0,
    "L-417A185B": 192.0,
    "L-1216C47A": 640.0,
    "L-6E869C2A": 96.0,
    "L-F7808C92": 768.0,
    "L-1945791B": 192.0,
    "L-2C3B7624": 128.0,
    "L-74FC7D96": 64.0,
    "L-7295265B": 128.0,
    "L-43DA4232": 896.0,
    # Spot (market = "spot"): G and VT, P, Standard, DL, Inf, F, X.
    "L-3819A6DF": 64.0,
    "L-7212CCBC": 192.0,
    "L-34B43A08": 640.0,
    "L-85EED4F7": 96.0,
    "L-B5D1601B": 192.0,
    "L-88CF9481": 64.0,
    "L-E3A00192": 128.0,
}


# The design note's variables under its names, with an admin's values, all but `ami`: that one
# design_note_variables reads from moto.
DESIGN_NOTE_EXAMPLE: dict[str, Any] = {
    "credentials_profile": "default",
    "region": REGION,
    "key_name": KEY_NAME,
    "identity_file_path": "~/.ssh/team-key.pem",
    "allowed_ips": ["203.0.113.10/32"],
    "team_pass": TEAM_PASS,
    "instance_type": "g4dn.4xlarge",
    "github_repo_name": "ml-notebooks",
    "github_user_name": "my-team",
    "github_access_token": GITHUB_TOKEN,
}
DESIGN_NOTE_VARIABLES = frozenset(DESIGN_NOTE_EXAMPLE) | {"ami"}


class HarnessError(RuntimeError):
    """A tool or mirror the real-Terraform tests need is missing: says how to provide it."""


# --- Tools --------------------------------------------------------------------------------------


def terraform_binary() -> str:
    path = shutil.which("terraform")
    if path is None:
        raise HarnessError(
            "terraform is not on PATH: install Terraform >= 1.11 "
            "(https://developer.hashicorp.com/terraform/install, or the hashicorp apt repository)"
        )
    return path


def plugin_dir() -> Path:
    """The local filesystem mirror that holds the AWS provider (terraform init -plugin-dir)."""
    folder = Path(os.environ.get(PLUGIN_DIR_ENV) or DEFAULT_PLUGIN_DIR)
    found = sorted(folder.glob("registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"))
    if not found:
        raise HarnessError(
            f"no AWS provider in the Terraform plugin mirror {folder} (looked for "
            "registry.terraform.io/hashicorp/aws/<version>/<os>_<arch>/terraform-provider-aws_*). "
            "Make one on a machine with internet access: `terraform providers mirror <dir>` in "
            "infrastructure/ (or unzip the provider's release from releases.hashicorp.com into "
            f"that layout), then set {PLUGIN_DIR_ENV}=<dir> or copy it to {DEFAULT_PLUGIN_DIR}."
        )
    return folder


def terraform_env() -> dict[str, str]:
    """No CLI configuration of the machine's user (a network mirror there would be tried first);
    providers linked from one cache instead of a 700 MB copy per working directory."""
    cache = CACHE / "plugin-cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_VAR_", "AWS_"))}
    env.update(
        {
            "TF_CLI_CONFIG_FILE": os.devnull,
            "TF_PLUGIN_CACHE_DIR": str(cache),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
        }
    )
    return env


# --- moto ---------------------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    """`python -m moto.server` on a loopback port it binds itself (port 0: no port picked here
    that another test could take meanwhile), with AWS's managed IAM policies loaded (the API
    Gateway account role attaches one). Yields its endpoint, as its startup line gives it.

    moto then believes its own port is 0 (MOTO_PORT): the URLs it builds back to itself (a
    Lambda invoke, Step Functions, CloudFormation's custom resources) would be wrong; the stack
    uses none of them."""
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "moto.log", "a+b") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while not (
                started := re.search(rb"Running on (http://127\.0\.0\.1:\d+)\r?\n", log_text(log))
            ):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError(f"moto server did not start: {log_text(log)[-2000:]!r}")
                time.sleep(0.1)
            yield started.group(1).decode()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_text(log: IO[bytes]) -> bytes:
    """All the log holds (opened for append: the writer's writes go to its end whatever this
    reader's offset)."""
    log.seek(0)
    return log.read()


class ServiceQuotasStub:
    """A stand-in for the Service Quotas API (GetServiceQuota, JSON 1.1) on 127.0.0.1.

    moto serves Service Quotas for the `vpc` service code only: GetAWSDefaultServiceQuota, which
    the AWS provider calls first, answers HTTP 500 for an EC2 code (the provider retries it for
    minutes), and GetServiceQuota NoSuchResourceException (test_preflight.py
    test_moto_cannot_serve_the_ec2_vcpu_quota asserts both). This stub answers both calls for the
    codes it is given (the account's value and, here, the same default), and
    NoSuchResourceException for any other code, as AWS does for a code it doesn't know.
    """

    def __init__(self, quotas: dict[str, float]) -> None:
        self.quotas = dict(quotas)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                code = request.get("QuotaCode", "")
                served = target.endswith((".GetServiceQuota", ".GetAWSDefaultServiceQuota"))
                if served and code in stub.quotas:
                    status, body = 200, {"Quota": stub.quota(request["ServiceCode"], code)}
                else:
                    status = 400
                    body = {"__type": "NoSuchResourceException", "Message": f"no quota {code}"}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def quota(self, service_code: str, code: str) -> dict[str, Any]:
        return {
            "ServiceCode": service_code,
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": f"arn:aws:servicequotas:{REGION}:123456789012:{service_code}/{code}",
            "QuotaCode": code,
            "QuotaName": code,
            "Value": self.quotas[code],
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ServiceQuotasStub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_ROOMY: list[ServiceQuotasStub] = []


def roomy_service_quotas() -> str:
    """The endpoint of a process-wide stub with quotas large enough for every instance type."""
    if not _ROOMY:
        _ROOMY.append(ServiceQuotasStub(ROOMY_QUOTAS))
    return _ROOMY[0].endpoint


def client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def moto_ami(endpoint: str) -> str:
    """An Ubuntu image moto ships (any of its AMIs would do for moto; this one looks the part)."""
    images = client("ec2", endpoint).describe_images(Owners=["amazon"])["Images"]
    ids = sorted(i["ImageId"] for i in images if "ubuntu" in i.get("Name", "").lower())
    return ids[0] if ids else sorted(i["ImageId"] for i in images)[0]


def design_note_variables(endpoint: str) -> dict[str, Any]:
    """The design note's variables, exactly its names, plus ami set to a moto image."""
    return copy.deepcopy(DESIGN_NOTE_EXAMPLE) | {"ami": moto_ami(endpoint)}


INSTANCE = "aws_instance.jupyter"
EMAILS = ["alice@example.com", "bob@example.com"]  # notify_emails, where a test sets it


def zones_offering(ec2: Any, instance_type: str) -> list[str]:
    """The availability zones that offer instance_type, sorted."""
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    )["InstanceTypeOfferings"]
    return sorted(offer["Location"] for offer in offerings)


def default_subnets(ec2: Any) -> list[dict[str, Any]]:
    """The region's default subnets, one per zone."""
    return ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]


# --- The module copy ----------------------------------------------------------------------------


def lambda_zip(target: Path) -> str:
    """lambda_src/ zipped (fixed timestamps, so the same code gives the same hash); base64 SHA-256."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(LAMBDA_SRC.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(str(path.relative_to(LAMBDA_SRC)), (1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return base64.b64encode(hashlib.sha256(target.read_bytes()).digest()).decode()


def provider_override(endpoint: str, servicequotas_endpoint: str | None = None) -> str:
    urls = {name: endpoint for name in SERVICES}
    urls["servicequotas"] = servicequotas_endpoint or roomy_service_quotas()
    lines = "\n".join(f'    {name} = "{url}"' for name, url in urls.items())
    return f"""# Written by tests/infrastructure/stack.py: every AWS call goes to a local stand-in.
provider "aws" {{
  profile                     = null
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  max_retries                 = 3 # a call moto can't serve fails in seconds, not minutes

  endpoints {{
{lines}
  }}
}}
"""


def prepare(workdir: Path, endpoint: str, servicequotas_endpoint: str | None = None) -> Path:
    """<workdir>/infrastructure: the module as admins have it, but for the two files above."""
    workdir.mkdir(parents=True, exist_ok=True)
    module = workdir / "infrastructure"
    module.mkdir(exist_ok=True)
    for name in ("ec2_bootstrap", "lambda_src"):
        link = workdir / name
        if not link.exists():
            link.symlink_to(ROOT / name, target_is_directory=True)
    for source in INFRA.glob("*.tf"):
        if source.name == VERSIONS_FILE:
            (module / source.name).write_text(without_archive(source.read_text()))
        elif source.name != LAMBDA_PACKAGE_FILE:
            shutil.copyfile(source, module / source.name)
    package = workdir / "lambda_src.zip"
    digest = lambda_zip(package)
    (module / LAMBDA_PACKAGE_FILE).write_text(
        "# Written by tests/infrastructure/stack.py in place of infrastructure/lambda_package.tf:\n"
        "# the same local, for a zip the test built from lambda_src/ (no archive provider).\n"
        f'locals {{\n  lambda_package = {{\n    path         = "{package}"\n'
        f'    base64sha256 = "{digest}"\n  }}\n}}\n'
    )
    (module / PROVIDER_OVERRIDE_FILE).write_text(
        provider_override(endpoint, servicequotas_endpoint)
    )
    return module


# --- Running terraform --------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_terraform(module: Path, *args: str, check: bool = True, timeout: float = 600) -> Result:
    completed = subprocess.run(
        [terraform_binary(), *args],
        cwd=module,
        env=terraform_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"terraform {' '.join(args)} failed ({result.returncode}):\n{result.output}"
        )
    return result


def init(module: Path) -> Result:
    # One init at a time: the plugin cache is shared, and Terraform does not lock it.
    with cache_lock("terraform-init"):
        return run_terraform(
            module, "init", "-input=false", "-no-color", f"-plugin-dir={plugin_dir()}"
        )


def var_args(variables: dict[str, Any]) -> list[str]:
    return [f"-var={name}={value_hcl(value)}" for name, value in variables.items()]


def value_hcl(value: Any) -> str:
    """A -var value: strings as they are, everything else in JSON (which HCL reads)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Plan:
    exit_code: int  # -detailed-exitcode: 0 no changes, 2 changes
    output: str
    json: dict[str, Any]

    def changes(self) -> dict[str, list[str]]:
        """address => actions, for every resource the plan would touch."""
        return {
            change["address"]: change["change"]["actions"]
            for change in self.json.get("resource_changes", [])
            if change["change"]["actions"] != ["no-op"] and change["change"]["actions"] != ["read"]
        }

    def change(self, address: str) -> dict[str, Any]:
        return next(c for c in self.json["resource_changes"] if c["address"] == address)["change"]


@dataclass
class Stack:
    """A stack Terraform applied: its module copy, the endpoint and the variables it used."""

    module: Path
    endpoint: str
    variables: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    apply_output: str = ""

    def client(self, service: str):
        return client(service, self.endpoint)

    @property
    def instance_id(self) -> str:
        return self.outputs["instance_id"]

    def user_data(self) -> str:
        """The instance's user_data as moto holds it: what EC2 hands cloud-init (gunzipped)."""
        attribute = self.client("ec2").describe_instance_attribute(
            InstanceId=self.instance_id, Attribute="userData"
        )
        raw = base64.b64decode(attribute["UserData"]["Value"])
        return gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()

    def plan(self, extra: dict[str, Any] | None = None, *args: str) -> Plan:
        result = run_terraform(
            self.module,
            "plan",
            "-input=false",
            "-no-color",
            "-detailed-exitcode",
            "-out=check.tfplan",
            *var_args(extra or {}),
            *args,
            check=False,
        )
        if result.returncode not in (0, 2):
            raise AssertionError(f"terraform plan failed:\n{result.output}")
        shown = run_terraform(self.module, "show", "-json", "check.tfplan")
        return Plan(result.returncode, result.output, json.loads(shown.stdout))

    def destroy(self) -> Result:
        return run_terraform(self.module, "destroy", "-auto-approve", "-input=false", "-no-color")


def write_variables(module: Path, variables: dict[str, Any]) -> None:
    """terraform.tfvars.json: the admin's terraform.tfvars, in the JSON form Terraform reads."""
    (module / "terraform.tfvars.json").write_text(json.dumps(variables, indent=2))


def ensure_key_pair(endpoint: str, name: str) -> None:
    """key_name names an existing key pair (the admin makes it first); make it in moto."""
    ec2 = client("ec2", endpoint)
    if not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]:
        ec2.create_key_pair(KeyName=name)


def apply(
    workdir: Path,
    endpoint: str,
    variables: dict[str, Any],
    servicequotas_endpoint: str | None = None,
) -> Stack:
    """Init, apply and read the outputs of the stack in <workdir> against the moto at endpoint."""
    module = prepare(workdir, endpoint, servicequotas_endpoint)
    write_variables(module, variables)
    ensure_key_pair(endpoint, variables["key_name"])
    init(module)
    applied = run_terraform(module, "apply", "-auto-approve", "-input=false", "-no-color")
    shown = run_terraform(module, "output", "-json")
    outputs = {name: value["value"] for name, value in json.loads(shown.stdout).items()}
    return Stack(module, endpoint, variables, outputs, applied.output)
