"""Run every benchmark: `python -m bench` (or `make bench`). Figures land in .cache/bench/."""

from __future__ import annotations

from bench import (
    autosave_latency,
    idle_check_cost,
    jupyter_startup,
    lambda_start_link,
    status_polling,
    terraform_apply,
)


def main() -> int:
    lambda_start_link.main()
    idle_check_cost.main()
    autosave_latency.main()
    terraform_apply.main()
    jupyter_startup.main()
    status_polling.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
