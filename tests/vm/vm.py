"""A Debian 12 VM under QEMU (TCG) for the instance bootstrap, with nothing leaving this machine.

User-mode networking with restrict=on: the guest reaches only the host services forwarded to it
with explicit guestfwd entries (each through `socat`, which serves many connections), and the
host reaches Jupyter through a hostfwd on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "vm"
IMAGE_DIR = CACHE / "debian12"
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "cloud-localds": "cloud-image-utils",
    "socat": "socat",
    "mke2fs": "e2fsprogs",
}


def require_host() -> None:
    missing = [
        pkg
        for tool, pkg in HOST_TOOLS.items()
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        pytest.fail(f"the VM test needs Debian packages: apt-get install {' '.join(missing)}")
    if os.geteuid() != 0:
        pytest.fail("building the VM image needs root (debootstrap): run the VM test as root")


def build_image() -> Path:
    """The cached Debian 12 image (built once; ~3 minutes)."""
    subprocess.run([str(ROOT / "tests" / "vm" / "build-image.sh"), str(IMAGE_DIR)], check=True)
    return IMAGE_DIR


@dataclass
class Forward:
    guest_ip: str
    guest_port: int
    host_port: int

    def netdev(self) -> str:
        return f"guestfwd=tcp:{self.guest_ip}:{self.guest_port}-cmd:socat - TCP:127.0.0.1:{self.host_port}"


class VM:
    def __init__(
        self,
        folder: Path,
        image: Path,
        seed: Path,
        forwards: list[Forward],
        jupyter_host_port: int,
        jupyter_guest_port: int = 8443,
    ) -> None:
        self.folder = folder
        self.image = image
        self.disk = folder / "disk.qcow2"
        self.seed = seed
        self.forwards = forwards
        self.jupyter_host_port = jupyter_host_port
        self.jupyter_guest_port = jupyter_guest_port
        self.process: subprocess.Popen | None = None
        self.console: Path | None = None
        if not self.disk.exists():
            subprocess.run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "raw",
                    "-b",
                    str(image / "rootfs.ext4"),
                    str(self.disk),
                ],
                check=True,
            )

    def boot(self, name: str) -> float:
        """Start the VM; returns the host time it started."""
        self.console = self.folder / f"console-{name}.log"
        netdev = ",".join(
            [
                "user,id=n0,restrict=on",
                f"hostfwd=tcp:127.0.0.1:{self.jupyter_host_port}-:{self.jupyter_guest_port}",
            ]
            + [f.netdev() for f in self.forwards]
        )
        command = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "3072",
            "-display", "none", "-no-reboot", "-serial", f"file:{self.console}",
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            # journald to the console too: the test shows what the guest logged when it fails.
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.journald.forward_to_console=1",
            "-drive", f"file={self.disk},if=virtio,format=qcow2",
            "-drive", f"file={self.seed},if=virtio,format=raw,readonly=on",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
        ]  # fmt: skip
        started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return started

    @property
    def qmp_socket(self) -> Path:
        return self.folder / "qmp.sock"

    def press_power_button(self) -> None:
        """An external, clean poweroff (ACPI), as AWS's StopInstances or the console does."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as qmp:
            qmp.settimeout(10)
            qmp.connect(str(self.qmp_socket))
            reader = qmp.makefile("r")
            reader.readline()  # the greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                qmp.sendall(json.dumps({"execute": command}).encode() + b"\n")
                while "return" not in json.loads(reader.readline()):
                    pass  # events before the answer

    def console_text(self) -> str:
        return (
            self.console.read_text(errors="replace")
            if self.console and self.console.exists()
            else ""
        )

    def wait_powered_off(self, timeout: float) -> float:
        assert self.process is not None
        self.process.wait(timeout)
        return time.monotonic()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def make_seed(
    folder: Path,
    user_data: str,
    vendor_data: str | None = None,
    instance_id: str = "iid-jupyter-on-demand-vm",
) -> Path:
    """A NoCloud seed: user_data as given; vendor_data, when given, is what the platform adds."""
    (folder / "user-data").write_text(user_data)
    (folder / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: jod-vm\n")
    command = ["cloud-localds"]
    if vendor_data is not None:
        (folder / "vendor-data").write_text(vendor_data)
        command += ["--vendor-data", str(folder / "vendor-data")]
    seed = folder / "seed.img"
    command += [str(seed), str(folder / "user-data"), str(folder / "meta-data")]
    subprocess.run(command, check=True)
    return seed
