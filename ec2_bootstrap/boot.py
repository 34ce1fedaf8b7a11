"""The instance's boot steps, as root: the command line (README "What happens on the instance";
where things live: layout.py). Each step has a module of its own.

    install  (boot_install.py) every boot until done once: packages, the `jupyter` user, the
             venv, the GPU kernel, then `sync` and the units; transient failures retry
    sync     (boot_sync.py) the code bundle, the units rendered from their templates
             (layout.render_unit), and the settings into config.env
    wake     (boot_wake.py) every boot, one process: `sync` (keeping the last good code and
             config.env when SSM can't be read), `secrets` (boot_secrets.py) and `repo`
             (boot_repo.py, as the service user, unless unchanged), root's marker for Jupyter
             (wake_marker.py), then the ready tag once Jupyter answers (boot_ready.py)
    secrets, repo, ready   one part of `wake` alone, by hand

user_data ships this file and the modules `install` imports (locals.tf user_data_files):
standard library only, as the system Python runs them before any venv. The others come with the
code bundle and are imported where a step needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from boot_install import install_step, site_config
from boot_sync import sync_step
from layout import BootError, Paths

logger = logging.getLogger("jupyter_on_demand.boot")

MIN_PYTHON = (3, 10)
# The step names: idle-failsafe.sh's pgrep and the idle checker's boot-step check know them all.
STEPS = ("install", "sync", "wake", "secrets", "repo", "ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jupyter-on-demand boot steps")
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--synced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="jupyter-on-demand %(levelname)s: %(message)s", stream=sys.stderr
    )
    if sys.version_info < MIN_PYTHON:
        # Before anything that may need a newer Python; the idle stop needs none of this.
        logger.error(
            "JUPYTER-ON-DEMAND BOOT FAILED (%s): this AMI's python3 is %s; jupyter-on-demand needs "
            "Python %s or newer (Ubuntu 22.04+, Debian 12, the Deep Learning AMIs): choose another "
            "ami. The idle stop still stops the machine.", args.step,
            ".".join(map(str, sys.version_info[:3])), ".".join(map(str, MIN_PYTHON)),
        )  # fmt: skip
        return 1
    # botocore's debug log prints response bodies, which hold the secrets: never below WARNING.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        paths = Paths.from_env()
        # The environment of every step and of what it runs (no EnvironmentFile= in the units,
        # which would hold a config.env older than the one `wake` writes): the region, and the
        # site's AWS_ENDPOINT_URL, proxy and PIP_* settings. What is set already wins.
        for key, value in site_config(paths).items():
            os.environ.setdefault(key, value)
        if args.step == "install":
            install_step(paths)
        elif args.step == "sync":
            sync_step(paths)
        elif args.step == "wake":
            import boot_wake  # in the bundle, installed by `sync`, as the steps below

            return boot_wake.wake(paths, synced=args.synced)
        elif args.step == "repo":
            import boot_repo

            if boot_repo.repo_step(paths):
                print(boot_repo.REPO_COMPLETE)  # for root: the step may be skipped next time
        elif args.step == "secrets":
            import boot_secrets

            boot_secrets.secrets_step(paths)
        else:
            import boot_ready

            boot_ready.ready_step(paths)
    except BootError as error:
        logger.error("JUPYTER-ON-DEMAND BOOT FAILED (%s): %s", args.step, error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
