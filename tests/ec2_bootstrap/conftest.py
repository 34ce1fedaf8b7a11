from __future__ import annotations

import pytest

from demo.git_remote import GitRemote


@pytest.fixture
def remote(tmp_path):
    server = GitRemote(tmp_path / "remote")
    yield server
    server.stop()
