"""checkov's Terraform and secrets policies: no failed check, and every skip carries a reason."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infrastructure.terraform import INFRA, ROOT, TFVARS_EXAMPLE

SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov() -> str:
    path = shutil.which("checkov") or str(Path(sys.executable).parent / "checkov")
    if not Path(path).exists():
        pytest.fail("checkov is not installed (pip install checkov)")
    return path


def run_checkov(*args: str, quiet: bool = True) -> list[dict]:
    """checkov's JSON reports; quiet: failed checks only (else passed ones too)."""
    result = subprocess.run(
        [
            checkov(),
            *args,
            "--framework",
            "terraform",
            "secrets",
            "--skip-download",
            *(["--quiet"] if quiet else []),
            "-o",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    reports = json.loads(result.stdout or "[]")
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_no_failed_check_in_the_stack_with_the_example_tfvars() -> None:
    reports = run_checkov("-d", str(INFRA), "--var-file", str(TFVARS_EXAMPLE))
    terraform_reports = [r for r in reports if r.get("check_type") == "terraform"]
    assert terraform_reports, reports
    summary = terraform_reports[0]["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    assert summary["passed"] > 50


# Issue 13's optional resources, on: the example with these lines instead of its defaults.
OPTIONS_ON = {
    "notify_emails": '["alice@example.com", "bob@example.com"]',
    "monthly_budget_usd": "300",
    "market": '"spot"',
}


def test_checkov_finds_no_failed_check_with_notifications_budget_and_spot_on(
    tmp_path: Path,
) -> None:
    tfvars = TFVARS_EXAMPLE.read_text()
    for name, value in OPTIONS_ON.items():
        tfvars, count = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", tfvars)
        assert count == 1, name
    var_file = tmp_path / "options-on.tfvars"
    var_file.write_text(tfvars)
    reports = run_checkov("-d", str(INFRA), "--var-file", str(var_file), quiet=False)
    results = [r.get("results", {}) for r in reports if r.get("check_type") == "terraform"]
    assert results, reports
    failed = [f"{c['check_id']} {c['resource']}" for r in results for c in r["failed_checks"]]
    assert failed == []
    passed = {(c["check_id"], c["resource"]) for r in results for c in r["passed_checks"]}
    # The topic was checked (count 1 with these values) and is encrypted.
    assert ("CKV_AWS_26", "aws_sns_topic.notify[0]") in passed


def test_checkov_secrets_scan_of_the_example_tfvars_is_clean() -> None:
    reports = run_checkov("-f", str(TFVARS_EXAMPLE))
    failed = [c["check_id"] for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert failed == []


def test_every_checkov_skip_is_inline_with_a_real_reason() -> None:
    skips = []
    for path in INFRA.glob("*.tf"):
        for line in path.read_text().splitlines():
            match = SKIP.search(line)
            if match:
                skips.append((path.name, match.group(1), (match.group(2) or "").strip()))
    assert skips
    vague = [s for s in skips if len(s[2].split()) < 6]
    assert vague == []
