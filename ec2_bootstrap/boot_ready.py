"""The end of every wake (root, in the venv, after root's marker of the wake's success): once
Jupyter answers, restart the idle clock and tag the instance READY_TAG=<time>; `boot.py ready`
does the same by hand. Shipped in the code bundle.
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from boot_sync import aws_client
from imds import IMDS_URL, Metadata
from layout import BootError, Paths, jupyter_url, read_config
from wake_marker import wake_result

logger = logging.getLogger("jupyter_on_demand.boot")


# --- Ready signal (root) ----------------------------------------------------------------------


def instance_id(config: dict[str, str]) -> str:
    """From the config (tests) or IMDSv2 (no import of requests at the wake's end)."""
    if config.get("INSTANCE_ID"):
        return config["INSTANCE_ID"]
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_URL)
    found = Metadata(endpoint, timeout=5).get("/latest/meta-data/instance-id")
    if found is None:
        raise BootError("the instance metadata has no instance-id")
    return found.decode()


def jupyter_answers(config: dict[str, str], jupyter_env: dict[str, str]) -> bool:
    """Jupyter's API answers 200 to the API token. http.client, with a TLS context that loads no
    CA store (loopback, our own self-signed certificate, verified by no one as before): loading
    the system's CAs at each try cost more than the request under the VM test's emulation."""
    url = urllib.parse.urlsplit(jupyter_url(config))
    if url.scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "", url.port, timeout=5, context=context
        )
    else:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    try:
        connection.request("GET", "/api/status?no_track_activity=1",
                           headers={"Authorization": f"token {jupyter_env.get('JUPYTER_TOKEN', '')}"})  # fmt: skip
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def start_idle_clock(paths: Paths) -> None:
    """The idle clock restarts when people can use the machine (a first boot's install can take
    a while); root's own state file, in root's folder, as the idle checker keeps it, with the
    month's running hours it carries."""
    from idle_check import restart_clock
    from idle_proc import boot_id

    restart_clock(paths.idle_state, boot_id(), datetime.now(timezone.utc), "Jupyter ready")


# How long the end of the wake waits for Jupyter's first answer (what `boot.py ready` waited);
# JOD_READY_TIMEOUT sets it (tests that run a wake with no Jupyter to answer).
READY_TIMEOUT = float(os.environ.get("JOD_READY_TIMEOUT", "600"))


def announce_ready(paths: Paths, timeout: float | None = None) -> None:
    """The end of a successful wake, in its process: once Jupyter answers, restart the idle clock
    and tag the instance READY_TAG=<time>. The EC2 client (EC2's large model) and the instance id
    are made after root's marker on a second thread, while this one asks Jupyter (which reads its
    config and listens meanwhile): neither waits for the other."""
    timeout = READY_TIMEOUT if timeout is None else timeout
    config = read_config(paths.config)
    jupyter_env = read_config(paths.jupyter_env)
    with ThreadPoolExecutor(max_workers=1) as executor:
        tagger = executor.submit(lambda: (aws_client("ec2", config), instance_id(config)))
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while not jupyter_answers(config, jupyter_env):
            if time.monotonic() > deadline:
                if tagger.done() and tagger.exception() is not None:
                    logger.error("and the ready tag could not be prepared: %s", tagger.exception())
                raise BootError(f"Jupyter did not answer within {timeout:.0f} s")
            time.sleep(0.2)  # a refused connection on loopback costs nothing
        logger.info("Jupyter answers after %.1f s", time.monotonic() - started)
        start_idle_clock(paths)  # Jupyter serves: also when the tag fails below
        ec2, instance = tagger.result()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ec2.create_tags(Resources=[instance], Tags=[{"Key": config["READY_TAG"], "Value": now}])
    logger.info("JUPYTER-ON-DEMAND READY at %s", now)


def ready_step(paths: Paths, timeout: float | None = None, wake_timeout: float = 960) -> None:
    """`boot.py ready` by hand (no unit runs it: the wake ends with announce_ready): once this
    boot's wake succeeded, the same as the wake's end."""
    result = wake_result(paths, wake_timeout)
    if result is not True:
        raise BootError("this boot's wake " + ("failed" if result is False else "did not end")
                        + "; Jupyter does not start (journalctl -u jupyter-on-demand-secrets)")  # fmt: skip
    announce_ready(paths, timeout)
