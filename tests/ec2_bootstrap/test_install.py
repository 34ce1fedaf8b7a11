"""The machine always stops when nobody works: the idle stop depends on nothing that can fail,
and the first-boot install retries what fails transiently and is retried at the next boot."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import boot
import boot_install
import boot_ready
import boot_sync
import boot_wake
import layout
from tests.ec2_bootstrap.conftest import NO_BOOT_GRACE
from tests.support.system_python import SYSTEM_PYTHON, system_python_version

BOOTSTRAP = Path(boot.__file__).resolve().parent


@pytest.fixture
def layout_env(tmp_path) -> dict[str, str]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.env").write_text("IDLE_MINUTES=0.01\nJUPYTER_PORT=1\nJUPYTER_TLS=1\n")
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "JOD_ETC_DIR": str(etc),
        "JOD_CONFIG": str(etc / "config.env"),
        "JOD_STATE_DIR": str(tmp_path / "state"),
        "JOD_APP_DIR": str(tmp_path / "app"),  # no venv there: the install never ran
    }


def bare_idle_check(env: dict[str, str], marker: Path) -> subprocess.CompletedProcess[str]:
    """The checker as the idle unit runs it, on the system Python with no site-packages at all
    (-S): no requests, no boto3, no Jupyter."""
    system_python_version()  # fails with how to install it when missing
    return subprocess.run(
        [str(SYSTEM_PYTHON), "-S", "-E", "-s", str(BOOTSTRAP / "idle_check.py"), "--instance",
         "--min-uid", "100000", "--stop-command", f"touch {marker}", *NO_BOOT_GRACE],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "fault",
    [
        "no secrets folder",
        "the secrets step failed",
        "a corrupt idle state",
        "an unwritable state folder",
    ],
)
def test_the_idle_stop_runs_on_the_bare_system_python_whatever_failed(
    layout_env, tmp_path, fault: str
) -> None:
    secrets = tmp_path / "etc" / "secrets"
    state = tmp_path / "state"
    if fault == "the secrets step failed":
        secrets.mkdir()
        (secrets / "git-credentials").write_text("left from an earlier boot\n")  # no jupyter.env
    elif fault == "a corrupt idle state":
        state.mkdir()
        (state / "idle-state.json").write_text("{not json")
    elif fault == "an unwritable state folder":
        state.write_text("a file where the folder should be: every write fails, as on a full disk")
    marker = tmp_path / "stopped"
    result = bare_idle_check(layout_env, marker)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout.splitlines()[0])
    assert verdict["action"] == "stop", verdict
    assert "Jupyter unreachable" in verdict["reason"]
    assert marker.exists(), result.stderr


def fake_tools(folder: Path, apt_failures: int) -> Path:
    """dpkg says git is missing; apt-get fails `apt_failures` times on the dpkg lock first."""
    folder.mkdir()
    (folder / "dpkg").write_text('#!/bin/sh\n[ "$2" = git ] && exit 1\nexit 0\n')
    (folder / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{folder}/apt-calls"\n'
        f'n=$(wc -l < "{folder}/apt-calls")\n'
        f'if [ "$n" -le {apt_failures} ]; then\n'
        '  echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)" >&2\n'
        "  exit 100\nfi\nexit 0\n"
    )
    for tool in ("dpkg", "apt-get"):
        (folder / tool).chmod(0o755)
    return folder


def test_a_dpkg_lock_held_by_unattended_upgrades_is_waited_for_and_retried(
    tmp_path, monkeypatch
) -> None:
    tools = fake_tools(tmp_path / "bin", apt_failures=2)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setenv("JOD_RETRY_SECONDS", "0.01")
    boot_install.ensure_packages()
    calls = (tools / "apt-calls").read_text().splitlines()
    assert len(calls) == 4  # update fails twice, then update and install
    assert all("DPkg::Lock::Timeout=300" in call for call in calls)
    assert calls[-1].endswith("install -y -q git")


def install_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(fake tools, app folder) for `boot.py install`: apt always fails on the dpkg lock, so any
    apt call shows in tools/apt-calls and fails the step."""
    tools = fake_tools(tmp_path / "bin", apt_failures=100)
    config = tmp_path / "config.env"
    config.write_text("IDLE_MINUTES=40\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("jupyterlab==4.6.6\n")
    systemctl = tools / "systemctl"  # never the host's
    systemctl.write_text("#!/bin/sh\nexit 0\n")
    systemctl.chmod(0o755)
    for key, value in {
        "PATH": f"{tools}:/usr/bin:/bin",
        "JOD_SYSTEMCTL": str(systemctl),
        "JOD_RETRY_SECONDS": "0.01",
        "JOD_CONFIG": str(config),
        "JOD_APP_DIR": str(app),
        "JOD_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(key, value)
    return tools, app


def test_an_install_that_keeps_failing_exits_non_zero_and_says_why(
    tmp_path, monkeypatch, caplog
) -> None:
    tools, _ = install_env(tmp_path, monkeypatch)
    assert boot.main(["install"]) == 1
    assert "BOOT FAILED (install)" in caplog.text
    assert "Could not get lock" in caplog.text
    assert len((tools / "apt-calls").read_text().splitlines()) == 4  # four tries, then it gives up
    assert not (tmp_path / "state" / "installed").exists()  # so the next boot installs again


def test_an_installed_instance_returns_at_once_and_a_changed_requirement_reinstalls(
    tmp_path, monkeypatch
) -> None:
    tools, app = install_env(tmp_path, monkeypatch)
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "bin" / "python").write_text("")
    paths = layout.Paths.from_env()
    paths.state.mkdir()
    paths.install_stamp.write_text(boot_install.venv_inputs(paths, {}))
    assert boot.main(["install"]) == 0
    assert not (tools / "apt-calls").exists()
    (app / "requirements.txt").write_text("jupyterlab==4.7.0\n")
    assert boot.main(["install"]) == 1  # it reinstalls (here: apt fails)
    assert (tools / "apt-calls").exists()


@pytest.mark.parametrize("stop_fails", [False, True], ids=["jupyter running", "no jupyter unit"])
def test_an_install_stops_jupyter_before_it_touches_the_venv(
    tmp_path, monkeypatch, stop_fails: bool
) -> None:
    """Jupyter is not ordered after the install unit (its imports start with the boot's other
    units, not after the install's check): an install that does run stops it before the first
    package or pip call, and starts it again when done, even when it failed. The first boot has
    no Jupyter unit yet: a stop that fails is no failure of the install."""
    tools, _ = install_env(tmp_path, monkeypatch)
    calls = tools / "calls"
    systemctl = tools / "systemctl"  # install_env's, logging
    systemctl.write_text(
        f'#!/bin/sh\necho "systemctl $*" >> "{calls}"\n'
        + ('[ "$1" = stop ] && { echo "Unit not loaded." >&2; exit 5; }\n' if stop_fails else "")
    )
    apt = tools / "apt-get"
    apt.write_text(
        apt.read_text().replace("#!/bin/sh\n", f'#!/bin/sh\necho "apt-get" >> "{calls}"\n', 1)
    )
    assert boot.main(["install"]) == 1  # apt fails here, after the stop
    logged = calls.read_text().splitlines()
    assert logged[0] == f"systemctl stop {layout.JUPYTER_UNIT}"
    # A failed install starts the Jupyter it stopped again (the venv is as it was).
    restart = [] if stop_fails else [f"systemctl start --no-block {layout.JUPYTER_UNIT}"]
    assert logged[1:] == ["apt-get"] * 4 + restart
    jupyter = unit(layout.JUPYTER_UNIT)
    assert "jupyter-on-demand-install.service" not in words(jupyter, "Unit", "After")
    # Nor through the flush unit, which Jupyter follows (its Before=), and whose start runs no
    # process: Jupyter starts as soon as the boot reaches its units (a /bin/true as the user was
    # 1.2 s of the VM test's wake, spawned among the boot's other units).
    flush = unit(layout.FLUSH_UNIT)
    assert layout.JUPYTER_UNIT in words(flush, "Unit", "Before")
    assert "jupyter-on-demand-install.service" not in words(flush, "Unit", "After")
    assert "ExecStart" not in flush["Service"]
    assert flush.get("Service", "Type") == "oneshot"
    assert flush.get("Service", "RemainAfterExit") == "yes"  # active until the shutdown stops it
    assert jupyter.get("Service", "StartupCPUWeight") == "1000"
    # An install killed after the stop (its timeout, the OOM killer) never reaches its own start
    # of Jupyter; systemd starts it after any end of the install unit's process.
    post = unit(layout.INSTALL_UNIT).get("Service", "ExecStopPost")
    assert post == f"-/usr/bin/systemctl start --no-block {layout.JUPYTER_UNIT}"
    # The install's check is on the wake's path too: ahead of the boot's other units on the CPU.
    assert unit(layout.INSTALL_UNIT).get("Service", "StartupCPUWeight") == "1000"


def install_unit_runs(paths: layout.Paths) -> bool:
    """The install unit's ExecCondition= (its script, for these paths): exit 0 runs the unit."""
    result = subprocess.run(["/bin/sh", "-c", boot_install.install_condition(paths)], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode in (0, 1), result
    return result.returncode == 0


@pytest.mark.parametrize(
    "change", ["requirements.txt", "a broken venv", "local.env appears", "a settings change"]
)
def test_an_unchanged_install_is_not_even_started_and_any_changed_input_starts_it(
    tmp_path, monkeypatch, change: str
) -> None:
    tools, app = install_env(tmp_path, monkeypatch)
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "bin" / "python").symlink_to(SYSTEM_PYTHON)
    (app / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    paths = layout.Paths.from_env()
    assert install_unit_runs(paths)  # never checked: the first boot
    paths.state.mkdir()
    paths.install_stamp.write_text(boot_install.venv_inputs(paths, {}))
    assert boot.main(["install"]) == 0  # the Python check: already installed
    assert not (tools / "apt-calls").exists()
    assert not install_unit_runs(paths)  # the next wake skips it
    if change == "requirements.txt":  # a new bundle brought it
        (app / "requirements.txt").write_text("jupyterlab==4.7.0\n")
    elif change == "a broken venv":
        (app / "venv" / "bin" / "python").unlink()
        (app / "venv" / "bin" / "python").symlink_to(tmp_path / "python3.99")
    elif change == "local.env appears":
        paths.local_env.write_text("KERNEL_PYTHON=/opt/conda/bin/python\n")
    else:
        paths.config.write_text("IDLE_MINUTES=40\nKERNEL_PYTHON=/opt/conda/bin/python\n")
    assert install_unit_runs(paths)
    if change == "requirements.txt":
        assert boot.main(["install"]) == 1  # it reinstalls (here: apt fails)
        assert (tools / "apt-calls").exists()
        assert install_unit_runs(paths)  # and is tried again at the next boot


def test_the_install_units_condition_is_boot_pys() -> None:
    template = (BOOTSTRAP / f"{layout.INSTALL_UNIT}{layout.TEMPLATE_SUFFIX}").read_text()
    assert "\nExecCondition=/bin/sh -c '{install_condition}'\n" in template
    defaults = layout.Paths.from_env({})  # the instance's paths
    script = boot_install.install_condition(defaults).replace("$", "$$")  # systemd's escape
    assert unit(layout.INSTALL_UNIT).get("Service", "ExecCondition") == f"/bin/sh -c '{script}'"


@pytest.mark.parametrize("step", boot.STEPS)
def test_a_python_older_than_3_10_is_refused_with_a_clear_message(
    monkeypatch, caplog, tmp_path, step: str
) -> None:
    monkeypatch.setenv("JOD_CONFIG", str(tmp_path / "config.env"))
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    assert boot.main([step]) == 1
    assert f"JUPYTER-ON-DEMAND BOOT FAILED ({step})" in caplog.text
    assert "python3 is 3.9.18; jupyter-on-demand needs Python 3.10 or newer" in caplog.text
    assert "choose another ami" in caplog.text


def test_python_3_10_passes_the_version_check(monkeypatch, caplog, tmp_path) -> None:
    monkeypatch.setenv("JOD_CONFIG", str(tmp_path / "config.env"))
    monkeypatch.setattr(sys, "version_info", (3, 10, 12, "final", 0))
    boot.main(["sync"])  # fails further on (no bootstrap.env here), not on the version
    assert "needs Python" not in caplog.text and "bootstrap.env" in caplog.text


def failsafe_pattern() -> str:
    """The ERE idle-failsafe.sh hands to pgrep."""
    match = re.search(r"pgrep -u 0 -f '([^']+)'", FAILSAFE.read_text())
    assert match, "idle-failsafe.sh no longer runs pgrep -f '<pattern>'"
    return match.group(1)


@pytest.mark.parametrize("step", boot.STEPS)
def test_every_boot_step_holds_off_the_failsafe_and_the_checker(tmp_path, step: str) -> None:
    """A running `boot.py <step>` is seen by the real pgrep with the fail-safe's pattern, and
    by the checker's BOOT_STEP (a first install takes minutes)."""
    import idle_check

    fake = tmp_path / "boot.py"
    fake.write_text("import time\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, str(fake), step])
    try:
        time.sleep(0.3)
        found = subprocess.run(
            ["pgrep", "-u", str(os.geteuid()), "-f", failsafe_pattern()],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert str(process.pid) in found.stdout.split(), found
    finally:
        process.kill()
        process.wait()
    assert idle_check.BOOT_STEP.search(f"/opt/jupyter-on-demand/venv/bin/python boot.py {step}")


def test_the_units_run_only_steps_boot_py_knows() -> None:
    for path in BOOTSTRAP.glob("jupyter-on-demand-*.service"):
        for line in path.read_text().splitlines():
            if "boot.py" in line and line.startswith("Exec"):
                step = line.split("boot.py", 1)[1].split()[0]
                assert step in boot.STEPS, f"{path.name}: {line}"


class RepeatedLines(dict):
    """configparser's options of one section, where a key given again adds its lines, as systemd
    reads a list directive given twice (After=a, After=b: both), instead of the last one only."""

    def __setitem__(self, key: str, value: object) -> None:
        if isinstance(value, list) and key in self:
            super().__getitem__(key).extend(value)
        else:
            super().__setitem__(key, value)


def unit_text(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, dict_type=RepeatedLines)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def unit(name: str) -> configparser.ConfigParser:
    """The unit as the instance gets it: its template rendered for the default layout, which the
    unit file beside it is (test_user_data.py keeps it so)."""
    return unit_text((BOOTSTRAP / name).read_text())


def words(parser: configparser.ConfigParser, section: str, key: str) -> set[str]:
    """Every word of every `key=` line in `section`."""
    return set(parser.get(section, key, fallback="").split())


def test_a_list_directive_given_twice_keeps_both_lines() -> None:
    parsed = unit_text("[Unit]\nAfter=a.target b.service\nDescription=x\nAfter=c.target\n")
    assert words(parsed, "Unit", "After") == {"a.target", "b.service", "c.target"}
    assert parsed.get("Unit", "Description") == "x"


def test_at_shutdown_jupyter_stops_first_then_the_flush_runs_then_the_network_goes() -> None:
    """systemd.unit(5): units are stopped in the reverse order of Before=/After=. The flush unit
    runs its ExecStop at shutdown, so it must start before Jupyter (stop after it) and after
    network.target (systemd.special(7): stopped before the network goes down). Both units leave
    out the default dependencies (test_jupyter_imports_while_cloud_init_brings_up_the_network),
    so they say the shutdown ones themselves."""
    flush = unit("jupyter-on-demand-autosave-flush.service")
    assert "jupyter-on-demand.service" in words(flush, "Unit", "Before")
    assert "network.target" in words(flush, "Unit", "After")
    assert "jupyter-on-demand.service" not in words(flush, "Unit", "After")
    for name in ("jupyter-on-demand-autosave-flush.service", "jupyter-on-demand.service"):
        assert "shutdown.target" in words(unit(name), "Unit", "Conflicts"), name
        assert "shutdown.target" in words(unit(name), "Unit", "Before"), name
    assert flush.get("Service", "ExecStop").endswith("flush --repo /home/jupyter/work --timeout 60")
    jupyter = unit("jupyter-on-demand.service")
    assert "jupyter-on-demand-autosave-flush.service" not in words(jupyter, "Unit", "Before")


# What a unit with the default dependencies is ordered after (systemd.unit(5)): sysinit.target
# waits for cloud-init's network stage (cloud-init.service: Before=sysinit.target), so
# network-online.target and sysinit.target are reached together in the VM test.
DEFAULT_AFTER = {"sysinit.target", "basic.target"}


def ordered_after(name: str) -> set[str]:
    """Every unit `name` waits for at its start, through the project's units' After= and Before=
    (and the default dependencies of those that keep them), transitively."""
    project = {path.name: unit(path.name) for path in BOOTSTRAP.glob("jupyter-on-demand*.service")}
    after: dict[str, set[str]] = {}
    for unit_name, parser in project.items():
        after.setdefault(unit_name, set()).update(words(parser, "Unit", "After"))
        if parser.get("Unit", "DefaultDependencies", fallback="yes") != "no":
            after[unit_name] |= DEFAULT_AFTER
        for later in words(parser, "Unit", "Before"):
            after.setdefault(later, set()).add(unit_name)
    seen: set[str] = set()
    todo = [name]
    while todo:
        for earlier in after.get(todo.pop(), set()) - seen:
            seen.add(earlier)
            todo.append(earlier)
    return seen


def test_jupyter_imports_while_cloud_init_brings_up_the_network() -> None:
    """Jupyter's start is the wake's critical path (README, VM acceptance): its imports (7-11 s
    under the VM test's emulation) run from network.target, during cloud-init's network stage,
    instead of after it. It serves nothing before this boot's wake, which does wait for
    network-online (test_wake_wait.py). Local filesystems and /tmp's boot cleanup come first."""
    before_jupyter = ordered_after("jupyter-on-demand.service")
    # Its own, not only the flush unit's: it stops before the network goes down without it too.
    assert "network.target" in words(unit("jupyter-on-demand.service"), "Unit", "After")
    assert not {"network-online.target", *DEFAULT_AFTER} & before_jupyter
    assert {"local-fs.target", "systemd-tmpfiles-setup.service", "network.target"} <= before_jupyter
    assert "network-online.target" in ordered_after("jupyter-on-demand-secrets.service")


def test_the_idle_timer_depends_on_nothing_and_the_install_unit_runs_at_every_boot() -> None:
    timer = unit("jupyter-on-demand-idle.timer")
    assert timer.get("Install", "WantedBy") == "timers.target"
    assert timer.get("Timer", "OnUnitActiveSec") == "30s"
    idle = unit("jupyter-on-demand-idle.service")
    assert set(idle["Unit"]) == {"Description"}
    install = unit("jupyter-on-demand-install.service")
    assert install.get("Install", "WantedBy") == "multi-user.target"
    assert install.get("Service", "ExecStart").startswith("/usr/bin/python3 ")
    # cloud-final.service is After=multi-user.target, which wants this unit: ordering it after
    # cloud-final makes a cycle, and systemd drops the install job (seen in the VM test).
    assert "cloud-final.service" not in words(install, "Unit", "After")
    secrets = unit("jupyter-on-demand-secrets.service")
    assert "jupyter-on-demand-install.service" in words(secrets, "Unit", "After")


FAILSAFE = BOOTSTRAP / "idle-failsafe.sh"


def run_failsafe(
    tmp_path: Path,
    result: str,
    *,
    heartbeat_age: float | None,
    boot_step: bool = False,
    idle_minutes: int | str | None = 40,
    local_env: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The fail-safe as systemd runs it after a check ($SERVICE_RESULT), with `shutdown` and
    `pgrep` replaced by recorders."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "shutdown").write_text(f'#!/bin/sh\necho "$*" > "{tmp_path}/shutdown"\n')
    (bin_dir / "pgrep").write_text(f"#!/bin/sh\nexit {0 if boot_step else 1}\n")
    for tool in ("shutdown", "pgrep"):
        (bin_dir / tool).chmod(0o755)
    config = tmp_path / "config.env"
    config.unlink(missing_ok=True)
    if idle_minutes is not None:  # None: before the first settings arrived
        config.write_text(f"IDLE_MINUTES={idle_minutes}\n")
    local = tmp_path / "local.env"
    local.unlink(missing_ok=True)
    if local_env is not None:
        local.write_text(local_env)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    heartbeat = run_dir / "idle-ok"
    heartbeat.unlink(missing_ok=True)
    if heartbeat_age is not None:
        heartbeat.write_text("")
        when = time.time() - heartbeat_age
        os.utime(heartbeat, (when, when))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "SERVICE_RESULT": result,
        "JOD_CONFIG": str(config),
        "JOD_LOCAL_ENV": str(local),
        "JOD_RUN_DIR": str(run_dir),
        "JOD_BOOT_GRACE_SECONDS": "999999999",  # this machine's uptime is whatever it is
    }
    return subprocess.run(
        ["bash", str(FAILSAFE)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("result", "heartbeat_age", "boot_step", "stops"),
    [
        ("success", None, False, False),  # the checker decides
        ("exit-code", 45 * 60, False, True),  # failing for longer than the idle time
        ("timeout", 45 * 60, False, True),  # a hang its unit's timeout killed
        ("exit-code", 10 * 60, False, False),  # failing, but a check completed 10 min ago
        ("exit-code", None, True, False),  # not installed yet, a boot step runs: it waits
        ("exit-code", 45, False, True),  # IDLE_MINUTES=0.5 is 30 s, not 0 and not 5 min
        ("exit-code", 15, False, False),
    ],
    ids=[
        "checker-ok",
        "failing-45-min",
        "hung-45-min",
        "failing-10-min",
        "first-install",
        "half-minute-passed",
        "half-minute-not-yet",
    ],
)
def test_the_failsafe_stops_the_machine_once_no_check_completed_for_the_idle_time(
    tmp_path, result: str, heartbeat_age: float | None, boot_step: bool, stops: bool
) -> None:
    minutes = "0.5" if heartbeat_age in (15, 45) else "40"
    outcome = run_failsafe(
        tmp_path, result, heartbeat_age=heartbeat_age, boot_step=boot_step, idle_minutes=minutes
    )
    assert outcome.returncode == 0, outcome.stderr
    assert (tmp_path / "shutdown").exists() is stops, outcome.stdout
    if stops:
        assert (tmp_path / "shutdown").read_text().strip() == "-h now"


@pytest.mark.parametrize(("quiet_minutes", "stops"), [(39, False), (41, True)])
def test_before_the_settings_arrive_the_failsafe_stops_after_40_minutes(
    tmp_path, quiet_minutes: int, stops: bool
) -> None:
    """No config.env yet (the first boot, SSM unreachable): the fail-safe's default holds."""
    outcome = run_failsafe(
        tmp_path, "exit-code", heartbeat_age=quiet_minutes * 60, idle_minutes=None
    )
    assert outcome.returncode == 0, outcome.stderr
    assert (tmp_path / "shutdown").exists() is stops, outcome.stdout


@pytest.mark.parametrize("settings_arrived", [False, True], ids=["first-boot", "later-boot"])
def test_the_sites_local_env_sets_the_failsafes_minutes_as_it_does_config_env(
    tmp_path, settings_arrived: bool
) -> None:
    """local.env wins over the settings in config.env (boot.py merges it last); the fail-safe
    reads it the same way, so a site's IDLE_MINUTES holds from the first boot, before any
    settings arrived (a first install that failed)."""
    outcome = run_failsafe(
        tmp_path,
        "exit-code",
        heartbeat_age=3 * 60,
        idle_minutes=40 if settings_arrived else None,
        local_env="PIP_NO_INDEX=1\nIDLE_MINUTES=2\n",
    )
    assert outcome.returncode == 0, outcome.stderr
    assert (tmp_path / "shutdown").exists(), outcome.stdout


def test_the_failsafe_counts_from_boot_when_no_check_ever_completed(tmp_path) -> None:
    """No heartbeat since boot (the checker never arrived): the idle time counts from boot."""
    up_minutes = int(float(Path("/proc/uptime").read_text().split()[0]) // 60)
    if up_minutes < 2:
        pytest.fail("this machine booted less than 2 minutes ago; run the test again")
    before = run_failsafe(tmp_path, "exit-code", heartbeat_age=None, idle_minutes=up_minutes + 5)
    assert not (tmp_path / "shutdown").exists(), before.stdout
    after = run_failsafe(tmp_path, "exit-code", heartbeat_age=None, idle_minutes=up_minutes - 1)
    assert (tmp_path / "shutdown").exists(), after.stdout


def test_a_completed_check_touches_the_heartbeat_the_failsafe_reads(layout_env, tmp_path) -> None:
    layout_env["JOD_RUN_DIR"] = str(tmp_path / "run")
    result = bare_idle_check(layout_env, tmp_path / "stopped")
    assert result.returncode == 0, result.stderr
    heartbeat = tmp_path / "run" / "idle-ok"
    assert time.time() - heartbeat.stat().st_mtime < 60


def test_one_process_runs_the_wake_and_jupyter_waits_for_it() -> None:
    """The secrets unit runs the whole wake (sync, settings, secrets, repo) as one process, with
    no EnvironmentFile= (it would hold the config.env from before the settings were read);
    Jupyter serves only after it succeeded; the same process then tags the instance ready."""
    secrets = unit("jupyter-on-demand-secrets.service")
    assert secrets.get("Service", "ExecStart").endswith("/boot.py wake")
    assert not {"ExecStartPre", "ExecStartPost", "EnvironmentFile"} & set(secrets["Service"])
    assert "jupyter-on-demand-install.service" in words(secrets, "Unit", "After")
    # Jupyter starts before the wake (its imports overlap it) and waits for root's marker of this
    # boot's successful wake (test_wake_wait.py); bound to the secrets unit, it stops if that fails.
    jupyter = unit("jupyter-on-demand.service")
    assert "jupyter-on-demand-secrets.service" in words(jupyter, "Unit", "BindsTo")
    # Nor after the install (test_an_install_stops_jupyter_before_...) or any of the wake's units.
    assert not {name for name in words(jupyter, "Unit", "After") if name.startswith("jupyter")}
    lines = (BOOTSTRAP / "jupyter-on-demand.service").read_text().splitlines()
    assert "Environment=JOD_WAIT_FOR_WAKE=1" in lines
    assert jupyter.get("Service", "RestartPreventExitStatus") == "3"
    for name in ("install", "ready", ""):
        assert (
            "EnvironmentFile"
            not in unit(f"jupyter-on-demand{name and '-'}{name}.service")["Service"]
        )


def test_the_first_install_runs_before_config_env_exists_with_the_sites_settings(
    tmp_path, monkeypatch, caplog
) -> None:
    """user_data writes bootstrap.env only; config.env comes with the settings (the install's
    sync). The install reads no config.env, and pip gets the site's PIP_* from local.env."""
    install_env(tmp_path, monkeypatch)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "bootstrap.env").write_text("AWS_REGION=us-east-1\nBOOTSTRAP_PARAMETER_PREFIX=/p\n")
    (etc / "local.env").write_text("PIP_INDEX_URL=https://pypi.internal/simple\n")
    monkeypatch.setenv("JOD_CONFIG", str(etc / "config.env"))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert boot.main(["install"]) == 1  # apt fails here, after the settings were read
    assert "Could not get lock" in caplog.text
    assert os.environ["PIP_INDEX_URL"] == "https://pypi.internal/simple"
    assert not (etc / "config.env").exists()


def test_the_wake_process_tags_the_instance_ready_and_no_unit_of_its_own_does() -> None:
    """One Python for the boot steps: the ready step is the wake's end (boot_wake.ready_after_wake),
    not a second venv Python importing botocore again. The unit's timeout covers both parts; a
    failed tag after the marker is a success of the unit (BindsTo= would stop Jupyter); Jupyter
    is not ordered after the wake, whose process now waits for Jupyter's answer (a deadlock)."""

    assert "jupyter-on-demand-ready.service" not in layout.UNITS + layout.ENABLED
    assert "jupyter-on-demand-ready.service" in boot_sync.LEGACY_UNITS
    secrets = unit("jupyter-on-demand-secrets.service")
    assert secrets.get("Service", "SuccessExitStatus").split() == [str(boot_wake.READY_FAILED_EXIT)]
    assert int(secrets.get("Service", "TimeoutStartSec")) >= 900 + boot_ready.READY_TIMEOUT
    jupyter = unit("jupyter-on-demand.service")
    assert "jupyter-on-demand-secrets.service" not in words(jupyter, "Unit", "After")
    assert "jupyter-on-demand-secrets.service" not in words(jupyter, "Unit", "Requires")
    # What stays in the bundle for the previous version's sync does nothing if it ever runs.
    retired = unit("jupyter-on-demand-ready.service")
    assert retired.get("Service", "ExecStart") == "/bin/true"
    assert not {"ExecStartPre", "ExecStartPost", "ExecStop"} & set(retired["Service"])
    # Nothing starts it: the first install starts Jupyter and the flush unit (the wake with them).
    assert (BOOTSTRAP / "boot_sync.py").read_text().count('"jupyter-on-demand-ready.service"') == 1
