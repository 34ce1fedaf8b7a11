"""`boot.py wake` (root, in the venv; jupyter-on-demand-secrets.service at every boot), in one
process with one SSM client: `sync` (keeping the installed code and the last good config.env when
SSM can't be read), then `secrets` (and `repo`), then root's marker for Jupyter (wake_marker.py),
then the ready tag once Jupyter answers (boot_ready.py). Shipped in the code bundle.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from boot_sync import (
    aws_client,
    bootstrap_location,
    install_units,
    retire_legacy_units,
    sync_settings,
    sync_step,
)
from layout import ENABLED, IDLE_TIMER, SPOT_UNIT, UNITS, Paths
from rootfs import systemctl
from wake_marker import mark_wake

logger = logging.getLogger("jupyter_on_demand.boot")

# What `boot.py wake` exits with when the wake succeeded (Jupyter serves) but the ready tag
# could not be set: the secrets unit counts it a success (SuccessExitStatus=), so that BindsTo=
# doesn't stop a Jupyter the team can use; the journal says why.
READY_FAILED_EXIT = 4


def wake(paths: Paths, synced: bool = False) -> int:
    """Jupyter waits for this boot's verdict (wake_marker.wake_result): none until the wake's own
    part ends, then root's marker of success or of failure; then the ready tag."""
    mark_wake(paths, None)
    try:
        wake_step(paths, synced=synced)
    except BaseException:
        mark_wake(paths, False)
        raise
    mark_wake(paths, True)
    logger.info("JUPYTER-ON-DEMAND WAKE DONE")
    return ready_after_wake(paths)


def wake_step(paths: Paths, synced: bool = False) -> None:
    """Every boot, in one process with one SSM client: sync, then secrets (and repo). When sync
    brought new code for this very process, the wake goes on in it (one exec, only then)."""
    import boot_secrets  # in the bundle, installed by `sync`

    ssm = aws_client("ssm", bootstrap_location(paths))
    if not synced:
        changed = sync_step(paths, ssm, keep_last_good=True)
        here = Path(__file__).resolve().parent
        if here == paths.app.resolve() and any(name.endswith(".py") for name in changed):
            logger.info("the instance code changed; the wake goes on in the new code")
            sys.stderr.flush()
            # The same interpreter and script, by absolute path: no shell, no PATH lookup.
            os.execv(sys.executable, [sys.executable, str(here / "boot.py"), "wake", "--synced"])  # noqa: S606
    else:
        # The previous version's sync just ran (it exec'd this): it knew no legacy units, and
        # installed the bundle's unit templates as they are; render them. It also refused (and
        # kept the last config.env for) settings this version added; write them now. Its enable
        # knew only its own units: enable this version's, and start those new to it.
        if install_units(paths, UNITS) | retire_legacy_units(paths):
            systemctl("daemon-reload")
        sync_settings(paths, ssm, keep_last_good=True)
        systemctl("enable", *ENABLED)
        systemctl("start", "--no-block", IDLE_TIMER, SPOT_UNIT)
    boot_secrets.secrets_step(paths, ssm)


def ready_after_wake(paths: Paths) -> int:
    """The wake's last part, after root's marker (Jupyter serves from then on): the ready tag once
    Jupyter answers, in this process (botocore is imported already; no second Python). Nothing
    here undoes the wake: a failure exits READY_FAILED_EXIT, which the unit counts a success."""
    import boot_ready

    try:
        boot_ready.announce_ready(paths)
    except Exception:
        logger.exception("JUPYTER-ON-DEMAND READY FAILED: the instance is not tagged ready, so the "
                         "start page says booting until the next boot; Jupyter itself serves "
                         "(journalctl -u jupyter-on-demand)")  # fmt: skip
        return READY_FAILED_EXIT
    return 0
