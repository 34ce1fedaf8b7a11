"""The real stack with real Terraform against moto: `terraform apply` and the second (no-change)
`terraform plan`, each as a ratio to `terraform validate` of the same module in the same run.

The harness is the test suite's (tests/infrastructure/stack.py): a copy of infrastructure/ with the
test's Lambda zip and endpoint overrides, the AWS provider from the local mirror, a moto server on
loopback. validate loads the provider and checks the whole configuration without calling AWS: the
fixed cost every Terraform command pays, so the ratios say what the calls to AWS (moto) add.
Median of RUNS for validate and plan; one apply per run (a second would be a no-op).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import median_seconds, report
from tests.infrastructure import stack as harness

RUNS = 3


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder, harness.moto_server() as endpoint:
        workdir = Path(folder)
        module = harness.prepare(workdir, endpoint)
        harness.write_variables(module, harness.design_note_variables(endpoint))
        harness.ensure_key_pair(endpoint, harness.KEY_NAME)
        harness.init(module)
        validate = median_seconds(
            lambda: harness.run_terraform(module, "validate", "-no-color"), RUNS
        )
        apply = median_seconds(  # one run: a second apply would be a no-op
            lambda: harness.run_terraform(
                module, "apply", "-auto-approve", "-input=false", "-no-color"
            ),
            1,
        )
        stack = harness.Stack(module, endpoint, {})
        plan = median_seconds(stack.plan, RUNS)
        stack.destroy()
    figures = {
        "validate_seconds": validate,
        "apply_seconds": apply,
        "second_plan_seconds": plan,
        "apply_to_validate_ratio": apply / validate,
        "second_plan_to_validate_ratio": plan / validate,
    }
    report("terraform_apply", figures)
    return figures


if __name__ == "__main__":
    main()
