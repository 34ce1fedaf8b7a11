from __future__ import annotations

import os

import pytest

from demo.git_remote import GitRemote


@pytest.fixture(autouse=True)
def _environment_of_the_test_only():
    """boot.main() puts the instance's files into os.environ, as the steps pass them on to what
    they run (an endpoint from local.env, PIP_*): none of it outlives the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def remote(tmp_path):
    server = GitRemote(tmp_path / "remote")
    yield server
    server.stop()
