"""Wrapping a Jupyter method to record activity, where Jupyter emits no event for it.

Jupyter Server emits events for the contents service and kernel actions (jupyter_activity listens
to those); a message a client sends a kernel, terminal input and a terminal's start or end have
none. For each of these jupyter_activity names a `PatchPoint`: the method to wrap, by module,
class and name. An upgrade of Jupyter may remove, rename or change one. `PatchPoint.resolve`
then raises `PatchError` naming it: the server extension logs it and records the rest, and
tests/ec2_bootstrap/test_jupyter_activity.py fails on it before such an upgrade ships.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What a wrapper asks, after the original method returned: why this call is a person's
# interaction (`self` and the call's arguments), or None when it is not.
Reason = Callable[..., "str | None"]
Record = Callable[[str], None]
WRAPPED = "_jupyter_on_demand_wrapped"


class PatchError(RuntimeError):
    """A method jupyter-on-demand wraps is gone or changed in the installed Jupyter."""


@dataclass(frozen=True)
class PatchPoint:
    module: str
    owner: str
    method: str
    is_async: bool

    @property
    def name(self) -> str:
        return f"{self.module}.{self.owner}.{self.method}"

    def resolve(self) -> tuple[type, Callable[..., Any]]:
        """The class and the method to wrap, as the installed Jupyter has them."""
        try:
            owner = getattr(importlib.import_module(self.module), self.owner)
            original = getattr(owner, self.method)
        except (ImportError, AttributeError) as error:
            raise PatchError(
                f"{self.name} is gone ({error}): jupyter-on-demand records activity by wrapping "
                "it; find what replaced it and update jupyter_activity.py"
            ) from error
        if inspect.iscoroutinefunction(original) is not self.is_async:
            change = "no longer" if self.is_async else "now"
            raise PatchError(
                f"{self.name} is {change} a coroutine function: jupyter-on-demand's wrapper of "
                "it would break; update jupyter_activity.py"
            )
        return owner, original


def wrap(point: PatchPoint, reason: Reason, record: Record) -> None:
    """Make `point` record `reason(self, *args, **kwargs)` after each call that returned."""
    owner, original = point.resolve()
    if getattr(original, WRAPPED, False):
        return
    wrapper: Callable[..., Any]
    if point.is_async:

        @functools.wraps(original)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(self, *args, **kwargs)
            _record(reason(self, *args, **kwargs), record)
            return result

    else:

        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            _record(reason(self, *args, **kwargs), record)
            return result

    setattr(wrapper, WRAPPED, True)
    setattr(owner, point.method, wrapper)


def _record(why: str | None, record: Record) -> None:
    if why:
        record(why)
