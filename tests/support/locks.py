"""A lock for the caches the test processes share (.cache/): `make test` runs the suite in several
pytest-xdist workers, and the first to need a cache fills it while the others wait."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache"


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold .cache/<name>.lock (flock: released when the process dies). One name per cache: a
    second lock of the same name in the same process would wait for itself."""
    CACHE.mkdir(exist_ok=True)
    with (CACHE / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
