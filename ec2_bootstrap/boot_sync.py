"""`boot.py sync` (root, in the venv): the code bundle from SSM into the app folder, the units
rendered from their templates in it (layout.render_unit), and the settings from SSM into
config.env (layout.config_values). Every wake runs it first; the first boot's install runs it
once the venv exists. Shipped in user_data (the install needs it before any bundle arrives):
standard library at import, botocore inside the functions that run in the venv.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from boot_install import install_condition, site_config
from layout import (
    BOOTSTRAP_KEYS,
    ENABLED,
    IDLE_TIMER,
    SPOT_UNIT,
    TEMPLATE_SUFFIX,
    UNITS,
    BootError,
    Paths,
    check_settings,
    chunk_parameters,
    config_values,
    decode_bundle,
    env_file,
    manifest_parameter,
    read_config,
    render_unit,
    settings_parameter,
    unit_values,
)
from rootfs import (
    ensure_dir,
    is_regular,
    owner_ids,
    read_regular,
    read_root_env,
    systemctl,
    write_file,
)

logger = logging.getLogger("jupyter_on_demand.boot")

LEGACY_FILES = ("idle-check.sh", "idle-check.cron")  # and cron.d/jupyter-on-demand
# Units of older versions, disabled and removed at sync (retire_legacy_units). The bundle still
# ships a no-op jupyter-on-demand-ready.service: the previous version's sync, which runs once
# more when an instance takes this version, installs every unit of ITS list from the bundle.
LEGACY_UNITS = ("jupyter-on-demand-ready.service",)
# SSM GetParameters takes at most 10 names a call.
GET_PARAMETERS_BATCH = 10


def aws_session() -> Any:
    """botocore's own session: boto3 adds nothing the steps use, and its import (s3transfer)
    costs a wake time. AWS_ENDPOINT_URL and the credential chain are botocore's."""
    import botocore.session

    return botocore.session.get_session()


def aws_client(service: str, config: dict[str, str]) -> Any:
    """A client that retries SSM/EC2 throttling with backoff (in the venv only); `wake` makes
    one SSM client and hands it to each step."""
    from botocore.config import Config

    return aws_session().create_client(
        service,
        region_name=config.get("AWS_REGION"),
        config=Config(
            retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=5, read_timeout=15
        ),
    )


def get_parameters(ssm: Any, names: list[str], decrypt: bool = False) -> dict[str, dict[str, Any]]:
    """{name: Parameter} of SSM parameters, ten a call; BootError naming those that don't exist."""
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for start in range(0, len(names), GET_PARAMETERS_BATCH):
        batch = names[start : start + GET_PARAMETERS_BATCH]
        answer = ssm.get_parameters(Names=batch, WithDecryption=decrypt)
        found |= {parameter["Name"]: parameter for parameter in answer["Parameters"]}
        missing += answer.get("InvalidParameters", [])
    if missing:
        raise BootError(f"SSM has no parameter {', '.join(missing)}")
    return found


def fetch_bundle(config: dict[str, str], ssm: Any = None) -> dict[str, str]:
    """The instance code {file name: content} from its SSM chunks, checked against the manifest."""
    files = fetch_code(config, ssm)[1]
    assert files is not None
    return files


def fetch_code(
    config: dict[str, str], ssm: Any = None, installed: str | None = None
) -> tuple[str, dict[str, str] | None]:
    """The manifest's SHA-256 and the instance code {file name: content}, checked against it;
    None for the code when its SHA-256 is `installed` (the chunks are then not read)."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = config["BOOTSTRAP_PARAMETER_PREFIX"]
    try:
        ssm = ssm or aws_client("ssm", config)
        name = manifest_parameter(prefix)
        manifest = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
        sha = str(manifest["sha256"])
        if installed is not None and sha == installed:
            return sha, None
        names = chunk_parameters(prefix, manifest)
        chunks = get_parameters(ssm, names)
        return sha, decode_bundle([chunks[name]["Value"] for name in names], manifest)
    except (BotoCoreError, ClientError, ValueError, KeyError, TypeError, BootError) as error:
        raise BootError(f"cannot read the instance code from SSM {prefix}/*: {error}") from error


def fetch_settings(config: dict[str, str], ssm: Any = None) -> dict[str, str]:
    """The settings {KEY: value} from SSM <prefix>/settings, checked (layout.check_settings)."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = settings_parameter(config["BOOTSTRAP_PARAMETER_PREFIX"])
    try:
        ssm = ssm or aws_client("ssm", config)
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as error:
        raise BootError(
            f"cannot read the settings from SSM {name}: {error}. Check the instance role, and "
            "that the parameter exists (terraform apply)."
        ) from error
    try:
        settings = json.loads(value)
    except ValueError:
        settings = None
    return check_settings(settings, f"SSM {name}")


def bootstrap_location(paths: Paths) -> dict[str, str]:
    config = site_config(paths)
    where = {key: config.get(key, "") for key in BOOTSTRAP_KEYS}
    if not all(where.values()):
        raise BootError(
            f"{paths.bootstrap_env} lacks AWS_REGION or BOOTSTRAP_PARAMETER_PREFIX; user_data "
            "writes it at the first boot (check the instance's user data, terraform apply)"
        )
    return where


def write_settings(paths: Paths, where: dict[str, str], settings: dict[str, str]) -> bool:
    """config.env (layout.config_values): root's 0644, replaced atomically (never written
    through a link)."""
    values = config_values(where, settings, read_root_env(paths.local_env))
    changed = write_file(paths.config, env_file(values), 0o644, owner_ids("root"))
    logger.info("settings from SSM %s/settings %s %s", where["BOOTSTRAP_PARAMETER_PREFIX"],
                "written to" if changed else "unchanged in", paths.config)  # fmt: skip
    return changed


SAFE_NAME = re.compile(r"[A-Za-z0-9._@-]+(/[A-Za-z0-9._@-]+)*")
LABEXTENSIONS = "labextensions"  # jupyter_server_config.py's extra_labextensions_path


def install_code(paths: Paths, files: dict[str, str]) -> list[str]:
    """Write the bundle's files; install the units; reload systemd when a unit changed. The
    names of the files that changed."""
    for name in files:  # Terraform's fileset: plain relative names, the labextension's in folders
        if not SAFE_NAME.fullmatch(name) or {".", ".."} & set(name.split("/")):
            raise BootError(f"the instance code in SSM names a file {name!r}; run terraform apply")
    changed = [
        name
        for name, content in sorted(files.items())
        if write_file(paths.app / name, content, 0o644)
    ]
    # The prebuilt labextension's files are named by their content's hash: drop older builds'.
    built = paths.app / LABEXTENSIONS
    for old in sorted(built.rglob("*"), reverse=True) if built.is_dir() else []:
        name = old.relative_to(paths.app).as_posix()
        if old.is_file() and name not in files:
            old.unlink()
        elif old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    units = install_units(paths, UNITS)
    ensure_dir(paths.jupyter_config, 0o755, owner_ids("root"))
    # jupyter_core writes this marker into the config folder at the first start after a kernel
    # made ~/.ipython, and fails when it can't; it gives up quietly on one it can't write.
    write_file(
        paths.jupyter_config / "migrated", "not migrated: jupyter-on-demand's own config\n", 0o644
    )
    # Compiled now, as root: the service user can't write __pycache__ here, so Jupyter's process
    # compiled jupyter_activity, git_autosave... at every start. Only what changed is compiled.
    import compileall

    compileall.compile_dir(str(paths.app), maxlevels=0, quiet=1)
    for legacy in LEGACY_FILES:  # the cron-based idle check of older versions
        (paths.app / legacy).unlink(missing_ok=True)
    (paths.system_etc / "cron.d" / "jupyter-on-demand").unlink(missing_ok=True)
    if retire_legacy_units(paths) or units:
        systemctl("daemon-reload")
        systemctl("enable", *ENABLED)
        systemctl("start", "--no-block", IDLE_TIMER, SPOT_UNIT)
    logger.info("instance code in sync (%d files changed)", len(changed))
    return changed


def install_units(paths: Paths, names: tuple[str, ...]) -> bool:
    """Render these units from their templates in the app folder (<name>.in, layout.render_unit)
    into systemd's folder; True when one changed (systemd then needs a daemon-reload)."""
    values = unit_values(paths, install_condition(paths))
    changed = [
        write_file(paths.systemd / name, render_unit(name, template(paths, name), values), 0o644)
        for name in names
    ]
    return any(changed)


def template(paths: Paths, name: str) -> str:
    return (paths.app / f"{name}{TEMPLATE_SUFFIX}").read_text()


def retire_legacy_units(paths: Paths) -> bool:
    """Disable, then remove, the unit files of older versions still installed (an instance
    upgraded from them); True when one was removed (systemd then needs a daemon-reload). A unit
    still running (the previous version's ready step, at the boot that upgrades) runs to its end.
    A disable that fails keeps the file (no dangling link in a .wants folder), said in the log."""
    removed = False
    for unit in LEGACY_UNITS:
        path = paths.systemd / unit
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            systemctl("disable", unit)
        except BootError as error:
            logger.error("could not disable %s, an older version's unit (%s)", unit, error)
            continue
        path.unlink()
        logger.info("removed %s, an older version's unit", unit)
        removed = True
    return removed


def sync_step(paths: Paths, ssm: Any = None, keep_last_good: bool = False) -> list[str]:
    """The code bundle and the settings from SSM; the names of the code files that changed.
    keep_last_good (every wake): what can't be read keeps the code installed and the last good
    config.env (so the idle stop keeps its minutes), said in the log; the first boot's `sync`
    (from `install`) fails instead, and the install is retried at the next boot."""
    where = bootstrap_location(paths)
    ssm = ssm or aws_client("ssm", where)
    changed: list[str] = []
    stamp = read_regular(paths.bundle_stamp)
    try:
        sha, files = fetch_code(where, ssm, stamp.decode(errors="replace") if stamp else None)
        if files is None:
            logger.info("instance code unchanged (SHA-256 %s…): nothing fetched", sha[:12])
        else:
            paths.bundle_stamp.unlink(missing_ok=True)  # until the whole bundle is in place
            changed = install_code(paths, files)
            write_file(paths.bundle_stamp, sha, 0o644)
    except BootError as error:
        if not keep_last_good:
            raise
        logger.error("%s; keeping the instance code installed in %s", error, paths.app)
    sync_settings(paths, ssm, keep_last_good)
    return changed


def sync_settings(paths: Paths, ssm: Any, keep_last_good: bool) -> None:
    """config.env from the settings in SSM; keep_last_good as sync_step."""
    where = bootstrap_location(paths)
    try:
        write_settings(paths, where, fetch_settings(where, ssm))
    except BootError as error:
        if not (keep_last_good and is_regular(paths.config)):
            raise
        logger.error("%s; keeping the last good %s (IDLE_MINUTES=%s)", error, paths.config,
                     read_config(paths.config).get("IDLE_MINUTES", "?"))  # fmt: skip
