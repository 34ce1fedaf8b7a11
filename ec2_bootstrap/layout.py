"""The instance's contract, written once: where things live (Paths; each path can be moved by a
JOD_* variable, which tests and the demo do), the service user, the settings and their shapes,
the env files' format, the code bundle's manifest, Jupyter's URL, and the systemd units, which
are rendered here from their templates in the code bundle. Everything that runs on the instance
(the boot steps, the idle checker, Jupyter's extensions), the demo and the tests take these from
here; tests/infrastructure/test_contracts.py holds Terraform to them. It stays one module (over
300 lines) on purpose: the contract is written in one place, and its parts are short.

Shipped in user_data: standard library only. It runs on the system Python, Python 3.10+ for the
steps, and older ones for rendering the units (`boot.py units`): the idle stop needs its units on
any AMI.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar


class BootError(Exception):
    """A reason a boot step can't go on; logged to journald and the console."""


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]*")
SAFE_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# The system Python: user_data's installer and the idle checker run on it, before any venv.
SYSTEM_PYTHON = "/usr/bin/python3"


# --- Where things live --------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    user: str  # the service user: Jupyter, the kernels, the clone and the autosave run as it
    home: Path
    repo: Path  # the clone of the team's repository, which Jupyter serves
    etc: Path  # root's: the settings and the secrets
    config: Path  # config.env, written by `boot.py sync` at every boot (config_values)
    bootstrap_env: Path  # user_data's: where the settings are (BOOTSTRAP_KEYS)
    local_env: Path  # the site's own settings, optional, root's
    app: Path  # the code bundle, the venv and the unit templates
    state: Path  # root's state
    run: Path  # root's markers of this boot
    systemd: Path
    system_etc: Path

    # The JOD_* variable that moves each path, and its default; `home`, `config` and the two env
    # files default relative to others (from_env).
    VARIABLES: ClassVar[dict[str, tuple[str, str | None]]] = {
        "user": ("JOD_USER", "jupyter"),
        "home": ("JOD_HOME", None),
        "repo": ("JOD_REPO_DIR", None),
        "etc": ("JOD_ETC_DIR", "/etc/jupyter-on-demand"),
        "config": ("JOD_CONFIG", None),
        "bootstrap_env": ("JOD_BOOTSTRAP_ENV", None),
        "local_env": ("JOD_LOCAL_ENV", None),
        "app": ("JOD_APP_DIR", "/opt/jupyter-on-demand"),
        "state": ("JOD_STATE_DIR", "/var/lib/jupyter-on-demand"),
        "run": ("JOD_RUN_DIR", "/run/jupyter-on-demand"),
        "systemd": ("JOD_SYSTEMD_DIR", "/etc/systemd/system"),
        "system_etc": ("JOD_SYSTEM_ETC", "/etc"),
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ if env is None else env)

        def value(name: str, default: str | None = None) -> str:
            variable, fixed = cls.VARIABLES[name]
            found = env.get(variable) or fixed or default
            assert found is not None
            return found

        user = value("user")
        home = Path(value("home", f"/home/{user}"))
        etc = Path(value("etc"))
        config = Path(value("config", str(etc / "config.env")))
        paths = cls(
            user=user,
            home=home,
            repo=Path(value("repo", str(home / "work"))),
            etc=etc,
            config=config,
            bootstrap_env=Path(value("bootstrap_env", str(config.parent / "bootstrap.env"))),
            local_env=Path(value("local_env", str(config.parent / "local.env"))),
            app=Path(value("app")),
            state=Path(value("state")),
            run=Path(value("run")),
            systemd=Path(value("systemd")),
            system_etc=Path(value("system_etc")),
        )
        paths.check()
        return paths

    def check(self) -> None:
        """Every path absolute and plain, the user a plain name: they go into systemd units and
        shell commands as they are (no quoting there; systemd would read %, $ and \\ itself)."""
        for field in fields(self):
            value = str(getattr(self, field.name))
            if field.name == "user":
                shape, what = SAFE_USER, "a user name (a-z, 0-9, _ and -)"
            else:
                shape, what = SAFE_PATH, "an absolute path of letters, digits and . _ - / only"
            if not shape.fullmatch(value):
                raise BootError(f"{self.VARIABLES[field.name][0]}={value!r} is not {what}")

    def environment(self) -> dict[str, str]:
        """The JOD_* variables that give Paths.from_env() exactly these paths, only those that
        differ from what it derives without them: the rendered units hand them to every process
        they start, so each sees the layout the units were rendered for (on an instance: none)."""
        variables = {self.VARIABLES[f.name][0]: str(getattr(self, f.name)) for f in fields(self)}
        for variable in list(variables):
            fewer = {key: value for key, value in variables.items() if key != variable}
            if Paths.from_env(fewer) == self:
                variables = fewer
        return variables

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets"

    @property
    def tls(self) -> Path:
        return self.etc / "tls"

    @property
    def user_state(self) -> Path:
        """The service user's own folder in root's state folder (the activity file)."""
        return self.state / "jupyter"

    @property
    def venv(self) -> Path:
        return self.app / "venv"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def jupyter_config(self) -> Path:
        """Jupyter's config path for the server (JUPYTER_CONFIG_DIR in jupyter-on-demand.service):
        root's and empty, so nothing the user writes in ~/.jupyter runs inside the server."""
        return self.app / "jupyter-config"

    @property
    def jupyter_env(self) -> Path:
        return self.secrets / "jupyter.env"

    @property
    def credentials(self) -> Path:
        return self.secrets / "git-credentials"

    @property
    def certfile(self) -> Path:
        return self.tls / "jupyter.crt"

    @property
    def keyfile(self) -> Path:
        return self.tls / "jupyter.key"

    @property
    def idle_state(self) -> Path:
        return self.state / "idle-state.json"

    @property
    def repo_inputs(self) -> Path:
        """Root's record of what the last complete `repo` step ran with (boot_repo.repo_inputs)."""
        return self.state / "repo-inputs.json"

    @property
    def bundle_stamp(self) -> Path:
        """The SHA-256 of the code bundle last installed whole: a wake whose manifest says the
        same fetches no chunk and rewrites no file."""
        return self.state / "bundle-sha256"

    @property
    def install_stamp(self) -> Path:
        return self.state / "installed"

    @property
    def install_inputs(self) -> Path:
        """What boot_install.install_inputs_command printed at the last good install check."""
        return self.state / "install-inputs"

    @property
    def activity(self) -> Path:
        return self.user_state / "activity.json"

    @property
    def wake_marker(self) -> Path:
        """Written by root at the end of this boot's successful wake (`boot.py wake`), holding
        the boot id; Jupyter and the ready step wait for it (wake_marker.wake_result)."""
        return self.run / "wake-ok"

    @property
    def wake_failed_marker(self) -> Path:
        """Written by root when this boot's wake failed: whoever waits gives up at once."""
        return self.run / "wake-failed"

    @property
    def keep_awake(self) -> Path:
        """The service user's keep-awake request from JupyterLab (jupyter_idle_api.py)."""
        return self.user_state / "keep-awake.json"

    @property
    def idle_verdict(self) -> Path:
        """Root's: the idle checker's last verdict, which Jupyter's status item reads."""
        return self.run / "idle-verdict.json"

    @property
    def idle_heartbeat(self) -> Path:
        """Touched after each completed idle check; idle-failsafe.sh reads its age."""
        return self.run / "idle-ok"

    @property
    def spot_notice(self) -> Path:
        """Root's, world-readable: AWS's spot interruption notice, written by spot_watch.py for
        JupyterLab (jupyter_idle_api.py)."""
        return self.run / "spot-interruption.json"


# --- The env files: config.env, jupyter.env, bootstrap.env, local.env ------------------------


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines (no shell expansion: the argon2 hash is full of `$`)."""
    config = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            config[key.strip()] = value.strip()
    return config


def read_config(path: Path) -> dict[str, str]:
    return parse_env(path.read_text())


def env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


# What user_data's bootstrap.env holds: where the settings and the code bundle are.
BOOTSTRAP_KEYS = ("AWS_REGION", "BOOTSTRAP_PARAMETER_PREFIX")

# The settings Terraform writes to <prefix>/settings (infrastructure/locals.tf instance_config):
# each key with the shape its value must have, and what that is in words.
SETTINGS = {
    "AWS_REGION": (r"[a-z]{2}(-[a-z]+)+-[0-9]+", "an AWS region such as eu-west-1"),
    "TEAM_PASS_PARAMETER": (r"[A-Za-z0-9_.\-/]{1,2048}", "an SSM parameter name"),
    "GITHUB_TOKEN_PARAMETER": (r"[A-Za-z0-9_.\-/]{1,2048}", "an SSM parameter name"),
    "GITHUB_REPO_URL": (r"https?://[^\s/@]+/[^\s@]+", "an http(s) URL without credentials"),
    "GITHUB_USER_NAME": (r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", "a GitHub user name"),
    "JUPYTER_PORT": (r"[0-9]{4,5}", "a port from 1024 to 65535"),
    "JUPYTER_TLS": (r"[01]", '"1" or "0"'),
    "IDLE_MINUTES": (r"[0-9]+(\.[0-9]+)?", "a positive number of minutes"),
    "READY_TAG": (r"[A-Za-z0-9 _.:/=+\-@]{1,128}", "an EC2 tag key"),
    "WARN_MINUTES": (r"[0-9]+(\.[0-9]+)?", "a number of minutes, 0 or more"),
    "MAX_KEEP_AWAKE_HOURS": (r"[0-9]+(\.[0-9]+)?", "a positive number of hours"),
    "LONG_RUN_HOURS": (r"[0-9]+(\.[0-9]+)?", "a positive number of hours"),
    "NOTIFY_TOPIC_ARN": (
        r"(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256})?",
        "an SNS topic ARN, or nothing",
    ),
    "PAGE_URL": (r"https?://[A-Za-z0-9.:-]+(/[A-Za-z0-9._-]+)*", "the start link's base URL"),
    "MARKET": (r"on-demand|spot", '"on-demand" or "spot"'),
}
DEFAULT_IDLE_MINUTES = 40.0  # before any settings arrive (idle-failsafe.sh says 40 too)


def check_settings(settings: object, name: str) -> dict[str, str]:
    """The settings as Terraform writes them: an object of strings, exactly SETTINGS' keys,
    each of its shape (one line each: nothing can add a line to config.env). BootError, saying
    what to fix, otherwise; `name` says where they came from."""
    if not isinstance(settings, dict):
        raise BootError(f"the settings in {name} are not a JSON object; run terraform apply")
    unknown = sorted(set(settings) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(settings))
    if unknown or missing:
        raise BootError(
            f"the settings in {name} " + "; ".join(
                [f"have unknown keys {', '.join(unknown)}"] * bool(unknown)
                + [f"lack {', '.join(missing)}"] * bool(missing)
            ) + "; run terraform apply with this version of jupyter-on-demand"
        )  # fmt: skip
    for key, (pattern, shape) in SETTINGS.items():
        item = settings[key]
        ok = isinstance(item, str) and re.fullmatch(pattern, item) is not None
        if ok and key == "JUPYTER_PORT":
            ok = 1024 <= int(item) <= 65535
        if ok and key in ("IDLE_MINUTES", "MAX_KEEP_AWAKE_HOURS", "LONG_RUN_HOURS"):
            ok = float(item) > 0
        if not ok:
            raise BootError(
                f"the settings in {name}: {key} is {json.dumps(item)}, not {shape}; "
                "check the variable in terraform.tfvars and run terraform apply"
            )
    return {key: settings[key] for key in SETTINGS}


def config_values(
    where: dict[str, str], settings: dict[str, str], local: dict[str, str]
) -> dict[str, str]:
    """config.env: where the settings are (bootstrap.env), the settings (checked), then the
    site's local.env, which wins. `boot.py sync` writes it so; the demo and the tests build
    theirs the same way."""
    missing = [key for key in BOOTSTRAP_KEYS if not where.get(key)]
    if missing:
        raise BootError(f"no {', '.join(missing)} for config.env")
    return {**{key: where[key] for key in BOOTSTRAP_KEYS}, **check_settings(settings, "config"),
            **local}  # fmt: skip


def idle_minutes(config: dict[str, str]) -> float:
    """IDLE_MINUTES of a config, DEFAULT_IDLE_MINUTES when it has none or a broken one."""
    return setting_number(config, "IDLE_MINUTES", DEFAULT_IDLE_MINUTES)


def setting_number(
    config: dict[str, str], key: str, default: float, zero_ok: bool = False
) -> float:
    """A number setting of a config; `default` when it has none or a broken one."""
    try:
        number = float(config.get(key, ""))
    except ValueError:
        return default
    return number if number > 0 or (zero_ok and number == 0) else default


def jupyter_url(config: dict[str, str], host: str = "127.0.0.1") -> str:
    """Jupyter's base URL: https unless JUPYTER_TLS is "0" (the settings' default is TLS)."""
    scheme = "http" if config.get("JUPYTER_TLS") == "0" else "https"
    return f"{scheme}://{host}:{config.get('JUPYTER_PORT', '8443')}"


# jupyter.env (root's, the service user's group may read it): what the wake hands Jupyter;
# jupyter_server_config.py reads these and the settings' JUPYTER_PORT.
def jupyter_env_values(paths: Paths, hashed_password: str, token: str, tls: bool) -> dict[str, str]:
    values = {
        "JUPYTER_HASHED_PASSWORD": hashed_password,
        "JUPYTER_TOKEN": token,
        "JUPYTER_ROOT_DIR": str(paths.repo),
        "JUPYTER_ACTIVITY_FILE": str(paths.activity),
        "JUPYTER_KEEP_AWAKE_FILE": str(paths.keep_awake),
        "JUPYTER_IDLE_VERDICT_FILE": str(paths.idle_verdict),
        "JUPYTER_SPOT_NOTICE_FILE": str(paths.spot_notice),
    }
    if tls:
        values |= {"JUPYTER_CERTFILE": str(paths.certfile), "JUPYTER_KEYFILE": str(paths.keyfile)}
    return values


# --- The code bundle in SSM ---------------------------------------------------------------------
#
# Terraform (infrastructure/locals.tf, ssm.tf) writes ec2_bootstrap/'s files as a JSON object
# {name: content}, gzipped and base64-encoded, in chunks of BUNDLE_CHUNK_CHARS characters
# (<prefix>/0, /1, ...), and <prefix>/manifest = {"chunks": count, "sha256": of the joined chunks}.
BUNDLE_CHUNK_CHARS = 4000
MANIFEST_KEYS = ("chunks", "sha256")


def manifest_parameter(prefix: str) -> str:
    return f"{prefix}/manifest"


def settings_parameter(prefix: str) -> str:
    return f"{prefix}/settings"


def chunk_parameters(prefix: str, manifest: dict[str, object]) -> list[str]:
    count = manifest["chunks"]
    if not isinstance(count, int) or count < 1:
        raise BootError(f"the manifest {manifest_parameter(prefix)} has no chunk count")
    return [f"{prefix}/{index}" for index in range(count)]


def decode_bundle(chunks: list[str], manifest: dict[str, object]) -> dict[str, str]:
    """{file name: content} from the chunks, checked against the manifest's SHA-256."""
    bundle = "".join(chunks)
    if hashlib.sha256(bundle.encode()).hexdigest() != manifest.get("sha256"):
        raise BootError("the instance code in SSM does not match its SHA-256; run terraform apply")
    files = json.loads(gzip.decompress(base64.b64decode(bundle)))
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(content, str) for name, content in files.items()
    ):
        raise BootError("the instance code in SSM is not a JSON object of files")
    return files


# --- The systemd units ---------------------------------------------------------------------
#
# Each unit's template is <unit>.in in the code bundle, rendered with str.format by render_unit:
# {app}, {python} and the like (unit_values); no other braces in them. `boot.py sync` renders
# them for this machine's layout. The unit-named files beside the templates are the same
# rendered for the default layout (`make units`; a test keeps them so): user_data writes the
# first three as they are, before any Python runs, and an older version's sync, which runs once
# more at the boot that brings this version, installs them by those names.
TEMPLATE_SUFFIX = ".in"
INSTALL_UNIT = "jupyter-on-demand-install.service"
IDLE_SERVICE = "jupyter-on-demand-idle.service"
IDLE_TIMER = "jupyter-on-demand-idle.timer"
SECRETS_UNIT = "jupyter-on-demand-secrets.service"
JUPYTER_UNIT = "jupyter-on-demand.service"
FLUSH_UNIT = "jupyter-on-demand-autosave-flush.service"
SPOT_UNIT = "jupyter-on-demand-spot-watch.service"
# Installed and started at every boot (WantedBy=); the first three also come in user_data: the
# idle stop first, then the install.
UNITS = (INSTALL_UNIT, IDLE_SERVICE, IDLE_TIMER, SECRETS_UNIT, JUPYTER_UNIT, FLUSH_UNIT, SPOT_UNIT)
USER_DATA_UNITS = UNITS[:3]
ENABLED = tuple(unit for unit in UNITS if unit != IDLE_SERVICE)  # the timer starts the check


def unit_values(paths: Paths, install_condition: str) -> dict[str, str]:
    """What a unit template may name. `environment`: an Environment= line with the layout
    (Paths.environment()), so every process a unit starts finds the same paths; on an instance
    (the default layout) a comment that says so."""
    layout = " ".join(f"{key}={value}" for key, value in paths.environment().items())
    return {
        "environment": f"Environment={layout}"
        if layout
        else "# The layout: layout.Paths' defaults",
        "user": paths.user,
        "home": str(paths.home),
        "repo": str(paths.repo),
        "app": str(paths.app),
        "python": str(paths.venv_python),
        "system_python": SYSTEM_PYTHON,
        "jupyter_config": str(paths.jupyter_config),
        # ExecCondition= runs its script through /bin/sh: systemd turns $$ into $.
        "install_condition": install_condition.replace("$", "$$"),
    }


def render_unit(name: str, template: str, values: dict[str, str]) -> str:
    """The unit `name` from its template (<name>.in), with a header that says so."""
    return (
        f"# jupyter-on-demand: rendered from {name}{TEMPLATE_SUFFIX} for this layout (layout.py);\n"
        "# edit the template, not this file.\n" + template.format_map(values)
    )
