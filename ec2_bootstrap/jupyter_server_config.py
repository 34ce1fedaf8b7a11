"""Jupyter Server configuration of jupyter-on-demand: on the instance, in the tests and the demo.

    python ec2_bootstrap/jupyter_extensions.py jupyter-lab \
        --config ec2_bootstrap/jupyter_server_config.py

(what jupyter-on-demand.service runs: `jupyter lab`, minus an import it never uses, see
jupyter_extensions.main; plain `jupyter lab --config ...` runs the same server, ~0.8 s slower.)

Environment variables (all optional but JUPYTER_HASHED_PASSWORD):

    JUPYTER_HASHED_PASSWORD  argon2 hash of the team password (jupyter_server.auth.passwd). Required:
                             without it the server refuses to start (fail closed).
    JUPYTER_TOKEN            internal API token for the idle checker and scripts; accepted only in an
                             `Authorization: token ...` header, never in a URL. Random when unset.
    JUPYTER_PORT             port to listen on (8443).
    JUPYTER_IP               address to listen on (0.0.0.0; the tests use 127.0.0.1).
    JUPYTER_ROOT_DIR         directory Jupyter serves: the clone of the team's repo (current dir).
    JUPYTER_CERTFILE, JUPYTER_KEYFILE
                             TLS certificate and key; TLS is off when they are unset.
    JUPYTER_AUTOSAVE         "0" turns the git autosave hook off (on by default when JUPYTER_ROOT_DIR
                             is a git repository).
    JUPYTER_ACTIVITY_FILE    where jupyter_activity.py records real interaction
                             (<JUPYTER_RUNTIME_DIR or ~/.local/share/jupyter/runtime>/activity.json).
    JUPYTER_IDLE_VERDICT_FILE, JUPYTER_KEEP_AWAKE_FILE
                             the idle checker's verdict, and where "Keep awake" asks it
                             (jupyter_idle_api.py); WARN_MINUTES and MAX_KEEP_AWAKE_HOURS as the
                             settings (layout.py), JOD_STATUS_POLL_SECONDS the status item's poll.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import jupyter_auth  # noqa: E402  (needs HERE on sys.path)

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (injected by Jupyter's config loader)

# Read, then drop from the environment: kernels and terminals inherit it and don't need them.
hashed_password = os.environ.pop("JUPYTER_HASHED_PASSWORD", "")
api_token = os.environ.pop("JUPYTER_TOKEN", "") or secrets.token_urlsafe(32)
if not hashed_password:
    raise SystemExit(
        "jupyter-on-demand: JUPYTER_HASHED_PASSWORD is not set; refusing to start without the team "
        "password (on the instance: check `journalctl -u jupyter-on-demand-secrets`)."
    )

c.ServerApp.ip = os.environ.get("JUPYTER_IP", "0.0.0.0")  # noqa: S104  (the security group filters)
c.ServerApp.port = int(os.environ.get("JUPYTER_PORT", "8443"))
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.root_dir = os.environ.get("JUPYTER_ROOT_DIR", os.getcwd())
c.ServerApp.allow_remote_access = True

# Login by password only; the token works in an Authorization header for internal callers.
c.ServerApp.identity_provider_class = jupyter_auth.HeaderTokenIdentityProvider
c.PasswordIdentityProvider.hashed_password = hashed_password
c.PasswordIdentityProvider.password_required = True
c.PasswordIdentityProvider.allow_password_change = False
c.IdentityProvider.token = api_token

certfile = os.environ.get("JUPYTER_CERTFILE")
keyfile = os.environ.get("JUPYTER_KEYFILE")
if certfile and keyfile:
    c.ServerApp.certfile = certfile
    c.ServerApp.keyfile = keyfile

# A lean start: the server extensions the team uses, and nothing else. JupyterLab's packages turn
# theirs on in <venv>/etc/jupyter/jupyter_server_config.d/*.json; False here wins over those files.
c.ServerApp.jpserver_extensions = {
    # Ours (jupyter_extensions.py): real interaction, not a tab's polling, is recorded for the
    # idle checker (jupyter_activity.py).
    "jupyter_extensions": True,
    "jupyterlab": True,
    # Terminals: the team works in them, and the idle checker reads them.
    "jupyter_server_terminals": True,
    # Language servers (LSP): none is installed and JupyterLab's LSP features are off by default.
    # At every start the extension looked for ~20 language servers in PATH and node_modules
    # folders, and ran `npm prefix -g` where node is installed. /lsp/* answers 404 now.
    "jupyter_lsp": False,
    # The classic Notebook's config shim: no nbclassic is installed; it read the
    # jupyter_notebook_config files and served <config>/nbconfig to classic extensions only.
    "notebook_shim": False,
}

# JupyterLab's calls to the internet, which the team doesn't use (and which a private or
# firewalled deployment would wait on):
# - Extension Manager read-only: it still lists the installed extensions, but neither searches
#   nor installs from PyPI (the venv is root's: an install from the UI would fail anyway), and
#   the start doesn't build PyPI's HTTP client (~60 ms, measured).
c.LabApp.extension_manager = "readonly"
# - No JupyterLab news feed (https://jupyterlab.github.io/assets/feed.xml); the UI doesn't ask.
c.LabApp.news_url = None
# - No "a newer JupyterLab is available" check against pypi.org: the venv is pinned by
#   requirements.txt and updated by a deploy, not from the UI.
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

# Our prebuilt labextension (labextension/ is its source): the idle stop's status item and its
# "Keep awake" warning. Shipped built in the code bundle: no Node.js on the instance.
c.LabApp.extra_labextensions_path = [str(HERE / "labextensions")]

# Every save is recorded for the git autosave worker; the save itself never waits for git.
if os.environ.get("JUPYTER_AUTOSAVE", "1") != "0":
    import git_autosave

    c.FileContentsManager.post_save_hook = git_autosave.post_save_hook
