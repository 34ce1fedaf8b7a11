"""Run every benchmark: `python -m bench` (or `make bench`). Figures land in .cache/bench/."""

from __future__ import annotations

from bench import lambda_start_link


def main() -> int:
    lambda_start_link.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
