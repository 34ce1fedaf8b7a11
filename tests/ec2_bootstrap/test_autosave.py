"""Git autosave against real Jupyter, real git and a real smart-HTTP remote with token auth."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import git_autosave
from demo.git_remote import GitRemote
from tests.ec2_bootstrap.autosave_support import (
    AUTOSAVE,
    disk_files,
    git,
    instance_clone,
    laptop_push,
    run_flush,
    wait_for,
)
from tests.support.jupyter import running_jupyter


@pytest.fixture
def setup(tmp_path, remote: GitRemote):
    repo, home = instance_clone(remote, tmp_path)
    return repo, home


@pytest.fixture
def jupyter(setup, tmp_path):
    repo, home = setup
    with running_jupyter(repo, tmp_path / "work", env={"HOME": str(home)}) as server:
        yield server


def remote_has(remote: GitRemote, path: str, content: str | None = None, ref: str = "main") -> bool:
    if path not in remote.files(ref):
        return False
    return content is None or remote.show(path, ref) == content


def test_one_save_reaches_the_remote_within_seconds(jupyter, remote) -> None:
    assert jupyter.save("hello.txt", "hello\n").status_code in (200, 201)
    wait_for(lambda: remote_has(remote, "hello.txt", "hello\n"), timeout=20)
    message = remote.git("log", "-1", "--format=%B", "main")
    assert message.startswith("Autosave: hello.txt")
    assert "saved in Jupyter Lab" in message


def test_a_saved_notebook_is_committed(jupyter, remote) -> None:
    assert jupyter.save_notebook("train.ipynb", "x = 1").status_code in (200, 201)
    wait_for(lambda: remote_has(remote, "train.ipynb"), timeout=20)
    assert "".join(json.loads(remote.show("train.ipynb"))["cells"][0]["source"]) == "x = 1"


def test_100_saves_in_10_seconds_from_several_clients_all_arrive(jupyter, remote) -> None:
    def save(i: int) -> int:
        return jupyter.save(f"client{i % 5}/file{i}.txt", f"content {i}\n").status_code

    jupyter.api("PUT", "/api/contents/client0", json={"type": "directory"})
    for folder in range(5):
        jupyter.api("PUT", f"/api/contents/client{folder}", json={"type": "directory"})
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(save, range(100)))
    assert all(status in (200, 201) for status in statuses)
    expected = {f"client{i % 5}/file{i}.txt" for i in range(100)}
    wait_for(lambda: expected <= set(remote.files()), timeout=60)
    assert "index.lock" not in jupyter.logs()


def test_saves_succeed_while_the_remote_is_down_and_are_pushed_when_it_returns(
    jupyter, remote, setup
) -> None:
    repo, _ = setup
    remote.stop()
    assert jupyter.save("offline.txt", "written offline\n").status_code in (200, 201)
    wait_for(lambda: "offline.txt" in git(repo, "ls-tree", "--name-only", "HEAD"), timeout=20)
    status = wait_for(lambda: git_autosave.Repo(repo).read_status().get("last_error"), timeout=20)
    assert "git push" in status
    remote.start()
    wait_for(lambda: remote_has(remote, "offline.txt", "written offline\n"), timeout=30)


def test_a_remote_that_moved_ahead_is_merged_and_both_sides_are_kept(
    jupyter, remote, setup, tmp_path
) -> None:
    repo, home = setup
    laptop_push(remote, tmp_path, home, {"laptop.txt": "from the laptop\n"})
    laptop_head = remote.head()
    assert jupyter.save("instance.txt", "from the instance\n").status_code in (200, 201)
    before = disk_files(repo)
    wait_for(lambda: remote_has(remote, "instance.txt"), timeout=20)
    assert remote_has(remote, "laptop.txt", "from the laptop\n")
    assert "Autosave" in remote.git("log", "-1", "--format=%s", "main")
    # A merge, not a rebase: both commits stay as they were made, HEAD is the merge of the two.
    merge = remote.head()
    assert git(repo, "rev-parse", "HEAD").strip() == merge
    ours, theirs = remote.git("log", "-1", "--format=%P", merge).split()
    assert theirs == laptop_head
    assert "laptop.txt" not in remote.git("ls-tree", "--name-only", ours)
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    # The work tree got the laptop's file, as git's own fast-forward would; nothing else changed.
    assert disk_files(repo) == {**before, "laptop.txt": b"from the laptop\n"}
    assert git(repo, "status", "--porcelain") == ""


def test_a_conflicting_remote_change_goes_to_a_side_branch_and_nothing_is_lost(
    jupyter, remote, setup, tmp_path, caplog
) -> None:
    repo, home = setup
    laptop_push(remote, tmp_path, home, {"README.md": "# laptop version\n"})
    assert jupyter.save("README.md", "# instance version\n").status_code in (200, 201)
    side = wait_for(
        lambda: [b for b in remote.branches() if b.startswith("autosave/")], timeout=30
    )[0]
    assert remote.show("README.md", side) == "# instance version\n"
    assert remote.show("README.md") == "# laptop version\n"
    assert (repo / "README.md").read_text() == "# instance version\n"
    assert "AUTOSAVE CONFLICT" in wait_for(
        lambda: "AUTOSAVE CONFLICT" in jupyter.logs() and jupyter.logs(), timeout=10
    )
    status = wait_for(lambda: git_autosave.Repo(repo).read_status().get("side_branch"), timeout=10)
    assert status == side


def test_a_120_mb_file_is_skipped_and_logged_while_the_others_are_pushed(
    jupyter, remote, setup
) -> None:
    repo, _ = setup
    assert jupyter.save("huge.txt", "a" * (120 * 2**20)).status_code in (200, 201)
    assert jupyter.save("small.txt", "small\n").status_code in (200, 201)
    wait_for(lambda: remote_has(remote, "small.txt"), timeout=60)
    assert "huge.txt" not in remote.files()
    assert (repo / "huge.txt").stat().st_size == 120 * 2**20
    logs = wait_for(
        lambda: "autosave skipped huge.txt" in jupyter.logs() and jupyter.logs(), timeout=10
    )
    assert "50 MB limit" in logs
    assert git_autosave.Repo(repo).read_status()["skipped"] == ["huge.txt"]


def test_files_written_by_code_deletions_and_renames_are_committed(jupyter, remote, setup) -> None:
    repo, _ = setup
    (repo / "results.csv").write_text("a,b\n1,2\n")
    (repo / ".ipynb_checkpoints").mkdir()
    (repo / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    (repo / ".env").write_text("SECRET=1\n")
    assert jupyter.save("first.txt", "1\n").status_code in (200, 201)
    wait_for(
        lambda: remote_has(remote, "results.csv") and remote_has(remote, "first.txt"), timeout=20
    )
    assert not any(f.startswith(".ipynb_checkpoints") or f == ".env" for f in remote.files())
    assert (
        jupyter.api("PATCH", "/api/contents/first.txt", json={"path": "renamed.txt"}).status_code
        == 200
    )
    assert jupyter.api("DELETE", "/api/contents/README.md").status_code == 204
    jupyter.save("trigger.txt", "t\n")
    wait_for(
        lambda: remote_has(remote, "renamed.txt") and not remote_has(remote, "README.md"),
        timeout=20,
    )
    assert not remote_has(remote, "first.txt")


def test_a_wrong_token_fails_the_push_clearly_without_failing_saves_or_leaking_the_token(
    remote, tmp_path
) -> None:
    wrong = "ghp_wrong_token_which_must_not_leak_000"
    repo, home = instance_clone(remote, tmp_path, token=remote.token)
    (home / ".git-credentials").write_text(remote.credential_line(token=wrong))
    with running_jupyter(repo, tmp_path / "work", env={"HOME": str(home)}) as jupyter:
        assert jupyter.save("a.txt", "a\n").status_code in (200, 201)
        error = wait_for(
            lambda: git_autosave.Repo(repo).read_status().get("last_error"), timeout=20
        )
        assert (
            "Authentication failed" in error or "401" in error or "could not read Username" in error
        )
        assert remote.server.auth_failures > 0
        logs = jupyter.logs()
    assert "autosave failed, will retry" in logs
    assert wrong not in logs
    assert wrong not in json.dumps(git_autosave.Repo(repo).read_status())
    assert "a.txt" in git(repo, "ls-tree", "--name-only", "HEAD")


def test_flush_commits_and_pushes_everything_and_exits_0(setup, remote) -> None:
    repo, home = setup
    (repo / "notes.md").write_text("flushed\n")
    result = run_flush(repo, home, 30)
    assert result.returncode == 0, result.stderr
    assert remote_has(remote, "notes.md", "flushed\n")
    assert remote.head() == git(repo, "rev-parse", "HEAD").strip()


def test_flush_with_the_remote_down_exits_non_zero_and_keeps_the_work(setup, remote) -> None:
    repo, home = setup
    remote.stop()
    (repo / "unpushed.md").write_text("keep me\n")
    result = run_flush(repo, home, 3)
    assert result.returncode != 0
    assert "unpushed.md" in git(repo, "ls-tree", "--name-only", "HEAD")
    assert (repo / "unpushed.md").read_text() == "keep me\n"
    remote.start()
    assert run_flush(repo, home, 30).returncode == 0
    assert remote_has(remote, "unpushed.md", "keep me\n")


def test_status_command_prints_the_last_push(setup, remote) -> None:
    repo, home = setup
    (repo / "s.md").write_text("s\n")
    assert run_flush(repo, home, 30).returncode == 0
    out = subprocess.run(
        [sys.executable, str(AUTOSAVE), "status", "--repo", str(repo)],
        capture_output=True,
        text=True,
        check=True,
    )
    status = json.loads(out.stdout)
    assert status["last_push"] == git(repo, "rev-parse", "--short", "HEAD").strip()
    assert status["last_error"] is None


def test_the_default_gitignore_never_overwrites_the_teams() -> None:
    assert ".ipynb_checkpoints/" in git_autosave.DEFAULT_GITIGNORE
    assert ".env" in git_autosave.DEFAULT_EXCLUDES


def test_tokens_in_urls_are_redacted() -> None:
    assert (
        git_autosave.redact("fatal: https://user:ghp_secret@github.com/x")
        == "fatal: https://***@github.com/x"
    )


def test_a_tracked_file_that_grows_over_the_limit_keeps_its_last_committed_version(setup) -> None:
    repo_path, home = setup
    import os

    os.environ["HOME"], old_home = str(home), os.environ.get("HOME", "")
    try:
        repo = git_autosave.Repo(repo_path, max_bytes=100)
        (repo_path / "data.txt").write_text("small\n")
        assert repo.commit_all()
        (repo_path / "data.txt").write_text("x" * 1000)
        (repo_path / "other.txt").write_text("other\n")
        assert repo.commit_all()
        assert git(repo_path, "show", "HEAD:data.txt") == "small\n"
        assert git(repo_path, "show", "HEAD:other.txt") == "other\n"
        assert repo.read_status()["skipped"] == ["data.txt"]
    finally:
        os.environ["HOME"] = old_home
