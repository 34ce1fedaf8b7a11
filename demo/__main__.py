"""The whole product on one machine, with nothing from AWS: `make demo` (python -m demo).

- AWS: a moto server on 127.0.0.1 plays EC2 and SSM. The demo creates what Terraform would: the
  instance (stopped) and the SSM parameters (team password, GitHub token).
- The start link: the real lambda_src handler behind demo/gateway.py at
  http://127.0.0.1:<port>/v1/start?pass=<password> (&view=page for the page).
- GitHub: a local bare repo served over git smart-HTTP with token auth (demo/git_remote.py).
- The instance: a local stand-in that follows moto's state. When moto says "running", it runs the
  real wake (boot.py wake: SSM → password hash, git credential, clone; the code sync aside: the
  demo copies ec2_bootstrap/ into its state folder), starts
  Jupyter as the rendered jupyter-on-demand.service says (demo/units.py), lets the wake tag it
  ready, and runs the real idle checker every few seconds (its flush: the flush unit's command). The checker's stop command stops the instance in moto; the
  stand-in then shuts Jupyter down, as a powered-off machine would.
Ctrl-C stops every process the demo started.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from demo import units
from layout import FLUSH_UNIT, JUPYTER_UNIT, Paths, config_values, env_file, read_config

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "ec2_bootstrap"

logger = logging.getLogger("demo")
PASSWORD = "demo-team-password"
REGION = "us-east-1"
READY_TAG = "jupyter-on-demand:ready-at"


def start_moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def create_stack(token: str) -> str:
    """What `terraform apply` creates, in moto: the stopped instance and the two secrets."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    instance_id = ec2.run_instances(
        ImageId="ami-03cf127a", InstanceType="g4dn.4xlarge", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "jupyter-on-demand-gpu"}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    ec2.stop_instances(InstanceIds=[instance_id])
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name="/demo/team-pass", Value=PASSWORD, Type="SecureString")
    ssm.put_parameter(Name="/demo/github-token", Value=token, Type="SecureString")
    return instance_id


class LocalInstance:
    """Follows the instance's state in moto and plays what the real machine does."""

    def __init__(
        self,
        instance_id: str,
        state_dir: Path,
        remote_url: str,
        jupyter_port: int,
        idle_minutes: float,
        warn_minutes: float,
        imds_url: str,
        page_url: str,
    ):
        self.instance_id = instance_id
        self.state_dir = state_dir
        self.jupyter_port = jupyter_port
        self.idle_minutes = idle_minutes
        self.jupyter: subprocess.Popen | None = None
        self.stop_event = threading.Event()
        # The instance's layout (layout.Paths) in the state folder; ec2_bootstrap/ is copied where
        # the code sync would install it (the demo has no SSM bundle).
        self.paths = Paths.from_env(
            {
                "JOD_APP_DIR": str(state_dir / "app"),
                "JOD_ETC_DIR": str(state_dir / "etc"),
                "JOD_STATE_DIR": str(state_dir / "state"),
                "JOD_HOME": str(state_dir / "home"),
                "JOD_USER": getpass.getuser(),
                "JOD_RUN_DIR": str(state_dir / "run"),
                "JOD_SYSTEMD_DIR": str(state_dir / "systemd"),
            }
        )
        # config.env as the instance's sync writes it: where the settings are, the settings
        # Terraform would write (locals.tf instance_config), and the site's own (local.env).
        where = {"AWS_REGION": REGION, "BOOTSTRAP_PARAMETER_PREFIX": "/demo/bootstrap"}
        settings = {
            "AWS_REGION": REGION,
            "TEAM_PASS_PARAMETER": "/demo/team-pass",
            "GITHUB_TOKEN_PARAMETER": "/demo/github-token",
            "GITHUB_REPO_URL": remote_url,
            "GITHUB_USER_NAME": "demo",
            "JUPYTER_PORT": str(jupyter_port),
            "JUPYTER_TLS": "0",
            "IDLE_MINUTES": f"{idle_minutes:g}",
            "READY_TAG": READY_TAG,
            "WARN_MINUTES": f"{warn_minutes:g}",
            "MAX_KEEP_AWAKE_HOURS": "12",
            "LONG_RUN_HOURS": "8",
            "NOTIFY_TOPIC_ARN": "",
            "PAGE_URL": page_url,
            "MARKET": "on-demand",
        }
        # local.env: this instance's id, and its metadata service (demo/imds.py).
        local = {"INSTANCE_ID": instance_id, "IMDS_ENDPOINT": imds_url}
        config = config_values(where, settings, local)
        self.paths.config.parent.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(env_file(config))
        # The units as the instance's sync renders them: the demo runs Jupyter and the flush as
        # they say (the commands, the environment with the layout).
        self.units = {name: units.rendered(name, self.paths) for name in (JUPYTER_UNIT, FLUSH_UNIT)}
        # No systemd here: the demo runs the units' commands itself (units.command).
        self.env = {**os.environ, **self.paths.environment(), "JOD_SYSTEMCTL": "true"}
        self.paths.home.mkdir(exist_ok=True)
        shutil.copytree(
            BOOTSTRAP,
            self.paths.app,
            # The labextension's TypeScript source (and its node_modules): its build is shipped.
            ignore=shutil.ignore_patterns("__pycache__", "labextension", "node_modules"),
            dirs_exist_ok=True,
        )

    def state(self) -> str:
        import boto3

        reservations = boto3.client("ec2", region_name=REGION).describe_instances(
            InstanceIds=[self.instance_id]
        )
        return reservations["Reservations"][0]["Instances"][0]["State"]["Name"]

    def power_on(self) -> None:
        logger.info(
            "instance %s is running: booting (boot.py wake: secrets, then Jupyter, then ready)",
            self.instance_id,
        )
        # The instance's wake, but for the code sync (this demo runs ec2_bootstrap/ in place): the
        # secrets, root's marker, then it waits for Jupyter and tags the instance ready.
        wake = subprocess.Popen(
            [sys.executable, str(self.paths.app / "boot.py"), "wake", "--synced"], env=self.env
        )
        # Jupyter as jupyter-on-demand.service runs it, once the wake has written this boot's
        # config.env and jupyter.env. The unit starts it with the wake and lets it wait for root's
        # marker itself (JOD_WAIT_FOR_WAKE); the demo may not run as root, so it waits here and
        # hands Jupyter the two files the same way (config.env, then jupyter.env).
        marker = self.paths.wake_marker
        deadline = time.monotonic() + 600
        while not marker.exists():
            if wake.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("boot.py wake failed; see its log above")
            time.sleep(0.2)
        unit = self.units[JUPYTER_UNIT]
        command = [sys.executable, *units.command(unit)[1:]]  # this venv, not the instance's
        root_flag = ["--allow-root"] if os.geteuid() == 0 else []
        jupyter_env = {**self.env, **units.environment(unit), "JOD_WAIT_FOR_WAKE": "0"}
        for path in (self.paths.config, self.paths.jupyter_env):
            jupyter_env |= read_config(path)
        jupyter_env |= {"JUPYTER_IP": "127.0.0.1", "JUPYTER_AUTOSAVE_DEBOUNCE": "1",
                        "JOD_STATUS_POLL_SECONDS": "5"}  # fmt: skip
        log = (self.state_dir / "jupyter.log").open("a")
        self.jupyter = subprocess.Popen(
            [*command, *root_flag], env=jupyter_env, cwd=self.paths.home, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if wake.wait(600) != 0:  # tags the instance ready and starts the idle clock
            raise RuntimeError("boot.py wake failed; see its log above")
        logger.info("Jupyter is ready at http://127.0.0.1:%s/lab", self.jupyter_port)

    def power_off(self) -> None:
        if self.jupyter is not None and self.jupyter.poll() is None:
            logger.info("instance stopped: shutting Jupyter down (the flush ran before the stop)")
            os.killpg(self.jupyter.pid, signal.SIGTERM)
            try:
                self.jupyter.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.jupyter.pid, signal.SIGKILL)
        self.jupyter = None

    def idle_check(self) -> None:
        """The real checker with the instance's own settings (--instance), but for what a laptop
        can't do: judge only Jupyter's process tree, stop in moto, flush as this user, and tag
        the instance in moto with this Python (the instance's venv has botocore)."""
        stop = f"{sys.executable} -m demo.stop_instance {self.instance_id}"
        publish = shlex.join([sys.executable, str(self.paths.app / "publish_verdict.py")])
        flush_unit = units.command(self.units[FLUSH_UNIT], "ExecStop")
        flush = shlex.join([sys.executable, *flush_unit[1:]])
        result = subprocess.run(
            [
                sys.executable, str(self.paths.app / "idle_check.py"), "--instance",
                "--process-root", str(self.jupyter.pid),
                "--stop-command", stop, "--flush-command", flush, "--publish-command", publish,
            ],
            env={**self.env, "HOME": str(self.paths.home), "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if result.stdout.strip():
            logger.info("idle check: %s", result.stdout.strip())

    def run(self, check_every: float = 5.0) -> None:
        last_check = 0.0
        while not self.stop_event.is_set():
            try:
                state = self.state()
                if state == "running" and self.jupyter is None:
                    self.power_on()
                    last_check = time.monotonic()
                elif state != "running" and self.jupyter is not None:
                    self.power_off()
                elif self.jupyter is not None and time.monotonic() - last_check >= check_every:
                    last_check = time.monotonic()
                    self.idle_check()
            except Exception:
                logger.exception("the local instance hit an error; retrying")
            self.stop_event.wait(1.0)
        self.power_off()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run jupyter-on-demand locally against moto.")
    parser.add_argument(
        "--idle-minutes", type=float, default=2.0, help="idle timeout (2 min by default)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="the local API Gateway's port (0: any)"
    )
    parser.add_argument(
        "--warn-minutes",
        type=float,
        default=0.5,
        help="JupyterLab warns this long before the idle stop (at most a quarter of it)",
    )
    parser.add_argument("--jupyter-port", type=int, default=8888)
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="where the demo keeps its files"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout
    )
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="jupyter-on-demand-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": REGION}
    )
    moto, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from demo.git_remote import GitRemote

    token = "ghp_demo_" + secrets.token_hex(12)
    remote = GitRemote(state_dir / "github", token=token)
    instance_id = create_stack(token)
    os.environ.update(
        {
            "INSTANCE_ID": instance_id,
            "TEAM_PASS_PARAMETER": "/demo/team-pass",
            "JUPYTER_PORT": str(args.jupyter_port),
            "JUPYTER_SCHEME": "http",
            "JUPYTER_HOST": "127.0.0.1",
            "IDLE_MINUTES": f"{args.idle_minutes:g}",
            "MAX_KEEP_AWAKE_HOURS": "12",
            # The page's month line, as Terraform sets it for g4dn.4xlarge in us-east-1 (its
            # table of list prices); no SNS topic in the demo: notifications are off.
            "PRICE_PER_HOUR_USD": "1.204",
            "PRICE_NOTE": "list price",
            "NOTIFY_TOPIC_ARN": "",
        }
    )
    from demo import imds
    from demo.gateway import serve

    gateway = serve(port=args.port)
    metadata = imds.serve(instance_id, REGION)
    instance = LocalInstance(
        instance_id, state_dir, remote.url, args.jupyter_port, args.idle_minutes,
        args.warn_minutes, f"http://127.0.0.1:{metadata.server_address[1]}",
        f"http://127.0.0.1:{gateway.server_address[1]}/v1",
    )  # fmt: skip
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()

    link = f"http://127.0.0.1:{gateway.server_port}/v1/start?pass={PASSWORD}"
    print(
        "\njupyter-on-demand demo is up (Ctrl-C stops everything)\n"
        f"  START LINK:  {link}&view=page\n"
        f"  JSON:        {link}\n"
        f"  STATUS:      http://127.0.0.1:{gateway.server_port}/v1/status?pass={PASSWORD}\n"
        f"  PASSWORD:    {PASSWORD}\n"
        f"  COMMITS:     git --git-dir {remote.bare} log --stat main\n"
        f"  REMOTE:      {remote.url}\n"
        f"  AWS (moto):  {endpoint}  instance {instance_id}\n"
        f"  IDLE:        the instance stops after {args.idle_minutes:g} min without activity; "
        f"JupyterLab warns {min(args.warn_minutes, args.idle_minutes / 4):g} min before\n"
        f"  KEEP AWAKE:  http://127.0.0.1:{gateway.server_port}/v1/keep-awake?pass={PASSWORD}&hours=1\n"
        f"  FILES:       {state_dir}\n",
        flush=True,
    )
    stopped = threading.Event()
    # Ctrl-C and SIGTERM stop everything. Both handled here: a shell without job control starts
    # a background job with SIGINT ignored, and Python then never raises KeyboardInterrupt.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    logger.info("stopping the demo")
    instance.stop_event.set()
    thread.join(30)
    gateway.shutdown()
    metadata.shutdown()
    remote.stop()
    moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
