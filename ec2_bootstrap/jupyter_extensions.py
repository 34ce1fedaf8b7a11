"""Jupyter's start on the instance, and jupyter-on-demand's Jupyter server extension.

1. `main`: what jupyter-on-demand.service runs, `jupyter lab` without an import it never uses,
   once this boot's wake has succeeded (`wait_for_wake`):

       /opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/jupyter_extensions.py \
           jupyter-lab --config=/opt/jupyter-on-demand/jupyter_server_config.py

2. The server extension jupyter_server_config.py turns on: our loggers write through Jupyter's,
   and real interaction (not a tab's polling) is recorded for the idle checker
   (jupyter_activity.py). The login is jupyter_auth.py's, set in jupyter_server_config.py.

Nothing here imports jupyter_server at module level: `main` has to block UNUSED_IMPORTS before
Jupyter's imports run.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from typing import Any

LAUNCHED_COMMAND = "jupyter-lab"
# Imported by Jupyter's start, used by none of its code: each is made to fail (see main).
UNUSED_IMPORTS = (
    # jsonschema's optional checker of the "iri" formats. Its import compiles 39 Earley parsers
    # (~0.8 s of a 1.6 s start on the 2-core test machine, ~8 s under the VM test's emulation)
    # and no Jupyter schema uses those formats. jsonschema imports it inside
    # `with suppress(ImportError)`: without it, only "iri"/"iri-reference" go unchecked.
    "rfc3987_syntax",
    # jsonschema's other optional format checkers, imported the same way: 45 modules (isoduration
    # brings arrow), ~0.7 s of the import under the VM test's emulation. No schema the server
    # loads uses their formats (test_jupyter_config.py): "duration", "color", "uri-template",
    # "hostname", "json-pointer", "date-time", "uri" and "uri-reference" go unchecked.
    "isoduration",
    "webcolors",
    "uri_template",
    "fqdn",
    "jsonpointer",
    "rfc3339_validator",
    "rfc3986_validator",
    # Shell tab completion of the command line (traitlets imports it inside `try`); a unit has
    # no shell to complete in.
    "argcomplete",
)
# What Jupyter's start imports from its packages after it reads its config, besides the
# services' handlers (jupyter_server.serverapp.JUPYTER_SERVICE_HANDLERS): imported with the rest,
# before the wake (import_jupyter). test_wake_wait.py checks that nothing else is left.
STARTUP_IMPORTS = (
    "jupyter_server_terminals.app",
    "tornado.platform.asyncio",
    "jinja2.ext",
    "jupyter_core.migrate",
)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_extensions"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # Our loggers (activity, autosave) write through Jupyter's own handlers, at INFO.
    ours = logging.getLogger("jupyter_on_demand")
    ours.handlers = list(serverapp.log.handlers)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    from jupyter_activity import record_interactions  # once Jupyter runs (see the module's doc)

    recorder = record_interactions(serverapp)
    serverapp.log.info("jupyter-on-demand: recording real interaction in %s", recorder.path)
    from jupyter_idle_api import add_handlers

    add_handlers(serverapp)  # the labextension's status item and "Keep awake" buttons


def leave_out_unused_imports() -> None:
    """Make each of UNUSED_IMPORTS fail in this process as if it were not installed."""
    for name in UNUSED_IMPORTS:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError


def main(argv: list[str] | None = None) -> int:
    """`jupyter_extensions.py jupyter-lab [options]`: start JupyterLab as `jupyter lab [options]`
    does, with UNUSED_IMPORTS failing as if not installed.

    Only in this process: kernels and terminals are separate processes and import what they like.
    The command's name stays in the command line: the idle checker tells the Jupyter server's own
    CPU (a tab's polling) from a user's process by it (idle_signals.JUPYTER_SERVER).
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != [LAUNCHED_COMMAND]:
        raise SystemExit(f"usage: jupyter_extensions.py {LAUNCHED_COMMAND} [jupyter lab options]")
    LabApp = import_jupyter()
    if os.environ.get("JOD_WAIT_FOR_WAKE") == "1":
        # The unit starts with the boot's units, before the wake: the imports above overlap it.
        # Nothing is configured or served until this boot's wake has succeeded.
        code = wait_for_wake()
        if code:
            return code
    LabApp.launch_instance(args[1:])
    return 0


def import_jupyter() -> Any:
    """All that Jupyter's start imports from its packages, and tornado's default TLS context: in
    the unit, before the wake, while it runs (after it, Jupyter's start is the wake's critical
    path). Nothing here reads the environment the wake writes. Returns JupyterLab's LabApp."""
    # Jupyter's imports make ~100 000 objects, all kept: the cyclic GC only costs them time
    # (~7 % of the import under the VM test's emulation). On again before anything else runs.
    gc.disable()
    try:
        leave_out_unused_imports()
        from jupyter_server.serverapp import JUPYTER_SERVICE_HANDLERS
        from jupyterlab.labapp import LabApp

        handlers = [name for names in JUPYTER_SERVICE_HANDLERS.values() for name in names or ()]
        for name in (*handlers, *STARTUP_IMPORTS):
            importlib.import_module(name)
        # tornado makes it (it loads the system's CA store) at the server's first TLS connection:
        # the wake's readiness check. A private function: a tornado without it makes it then.
        from tornado import netutil

        make_tls_defaults = getattr(netutil, "_client_ssl_defaults", None)
        if callable(make_tls_defaults):
            make_tls_defaults()
    finally:
        gc.enable()
    return LabApp


# How long Jupyter waits for the wake's marker. It starts at network.target, before the wake's
# unit can (after network-online, up to the wait-online timeout, and the install's check): the
# secrets unit's TimeoutStartSec= (1500 s) and a margin for those. A wake that fails sooner ends
# the wait with its failure marker (and BindsTo= stops this unit).
WAKE_WAIT_SECONDS = "1800"
# The unit's RestartPreventExitStatus=: a failed or missing wake is not retried every few seconds.
WAKE_FAILED_EXIT = 3


def wait_for_wake() -> int:
    """Wait for root's marker of this boot's successful wake (wake_marker.wake_result), then take the
    environment the wake wrote: config.env, then secrets/jupyter.env (what EnvironmentFile= gave
    when the unit started after the wake; read now, so a password changed in SSM is in force).
    0 to go on; WAKE_FAILED_EXIT when the wake failed or did not end in JOD_WAKE_TIMEOUT s."""
    from layout import BootError, Paths
    from rootfs import read_root_env
    from wake_marker import wake_result

    paths = Paths.from_env()
    timeout = float(os.environ.get("JOD_WAKE_TIMEOUT", WAKE_WAIT_SECONDS))
    print(f"jupyter-on-demand: waiting for this boot's wake ({paths.wake_marker})", file=sys.stderr)
    result = wake_result(paths, timeout)
    if result is not True:
        why = "failed" if result is False else f"did not end within {timeout:.0f} s"
        print(f"jupyter-on-demand: this boot's wake {why}; not starting Jupyter without the team "
              "password (journalctl -u jupyter-on-demand-secrets)", file=sys.stderr)  # fmt: skip
        return WAKE_FAILED_EXIT
    try:
        for path in (paths.config, paths.jupyter_env):
            os.environ.update(read_root_env(path))
    except BootError as error:
        print(f"jupyter-on-demand: {error}", file=sys.stderr)
        return WAKE_FAILED_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
