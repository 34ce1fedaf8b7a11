"""Run a service as its rendered systemd unit says (the demo's instance stand-in, and the tests):
the command line of ExecStart= (or ExecStop=) and the environment of its Environment= lines,
read from the unit boot.py rendered (layout.render_unit), so neither can drift from the real
units. Only what the project's units use: one value per key, quoting as layout.unit_values
writes it (shlex)."""

from __future__ import annotations

import shlex
from pathlib import Path

from layout import TEMPLATE_SUFFIX, Paths, render_unit, unit_values

BOOTSTRAP = Path(__file__).resolve().parent.parent / "ec2_bootstrap"


def directives(unit: str) -> list[tuple[str, str]]:
    """(key, value) of every directive line, in order (comments and sections left out)."""
    found = []
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.append((key.strip(), value.strip()))
    return found


def environment(unit: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in directives(unit):
        if key == "Environment":
            env |= dict(item.split("=", 1) for item in shlex.split(value))
    return env


def command(unit: str, key: str = "ExecStart") -> list[str]:
    values = [value for name, value in directives(unit) if name == key]
    if len(values) != 1:
        raise ValueError(f"the unit has {len(values)} {key}= lines, not one")
    return shlex.split(values[0])


def rendered(name: str, paths: Paths, install_condition: str = "true") -> str:
    """The unit `name` rendered from its template in ec2_bootstrap/ for this layout, as boot.py's
    sync renders it."""
    template = (BOOTSTRAP / f"{name}{TEMPLATE_SUFFIX}").read_text()
    return render_unit(name, template, unit_values(paths, install_condition))
