"""Autosave against what people and killed processes leave behind: half-done git operations, a
stale index.lock, other branches, repositories inside the work folder, files that outgrow the
limit or that a person staged over it, virtualenvs, a remote that refuses pushes for good, a
teammate's commits on the side branch, a git that runs too long. Real git, the real smart-HTTP
remote (with server-side hooks where GitHub would refuse), real Jupyter where the save comes
through Jupyter.

The promise under test: autosave never moves HEAD, never changes a branch, never touches the
person's index or the bytes in the work folder; the work still reaches the remote (on the side
branch `autosave/<host>` while it can't go to main), and `flush` exits 0 only when main has it all.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import autosave_git
import autosave_run
import git_autosave
from demo.git_remote import GitRemote
from tests.ec2_bootstrap.autosave_support import (
    disk_files,
    git,
    git_state,
    hang_pushes_and_take_index_lock,
    instance_clone,
    laptop_push,
    refuse_blobs_over,
    run_flush,
    run_git,
    slow_git_while_index_locked,
    wait_for,
)
from tests.support.jupyter import running_jupyter

SIDE = f"autosave/{autosave_git.host_name()}"
NOT_ALL = "does NOT have everything"  # what flush logs when it exits 3
SMALL_LIMIT = {"JUPYTER_AUTOSAVE_MAX_MB": "0.01"}  # 10 KB, so "big" files stay small in tests


@pytest.fixture
def setup(tmp_path, remote: GitRemote):
    return instance_clone(remote, tmp_path)


def status(repo: Path) -> dict:
    return git_autosave.Repo(repo).read_status()


def on_side(remote: GitRemote, path: str) -> str | None:
    """The file on the remote side branch, None while it is not there."""
    if remote.head(SIDE) is None or path not in remote.files(SIDE):
        return None
    return remote.show(path, SIDE)


# --- The reviewer's scenario ---------------------------------------------------------------------


def test_a_rebase_stopped_by_git_pull_is_left_as_the_person_left_it_and_saved_on_the_side(
    setup, remote, tmp_path
) -> None:
    repo, home = setup
    (repo / "analysis.py").write_text("rate = 1\n")
    (repo / "notes.md").write_text("# notes\n")
    assert run_flush(repo, home, 30).returncode == 0
    laptop_push(
        remote,
        tmp_path,
        home,
        {"analysis.py": "rate = 2  # laptop\n", "notes.md": "# notes from the laptop\n"},
    )
    laptop_head = remote.head()
    with running_jupyter(repo, tmp_path / "work", env={"HOME": str(home)}) as jupyter:
        # Both sides changed the same lines: autosave's push can't go to main.
        assert jupyter.save("analysis.py", "rate = 3  # instance\n").status_code == 200
        assert jupyter.save("notes.md", "# notes from the instance\n").status_code == 200
        # Both saves on the side: a second batch's fetch would race the person's pull for
        # refs/remotes/origin/main (a slow save can land after the first batch went).
        wait_for(lambda: on_side(remote, "notes.md") == "# notes from the instance\n", timeout=30)
        wait_for(lambda: status(repo).get("side_branch"), timeout=30)

        # The person runs `git pull` in a Jupyter terminal: the rebase stops on the conflicts.
        pull = run_git(repo, "pull", home=home)
        assert pull.returncode != 0 and "CONFLICT" in pull.stdout + pull.stderr
        assert (repo / ".git" / "rebase-merge").is_dir()
        # They resolve one file and stage it, leave the other conflicted, start a notebook.
        (repo / "analysis.py").write_text("rate = 3  # resolved\n")
        git(repo, "add", "analysis.py", home=home)
        before = git_state(repo)
        assert jupyter.save_notebook("draft.ipynb", "draft = True").status_code == 201
        on_disk = disk_files(repo)
        assert b"<<<<<<<" in on_disk["notes.md"]

        # Autosave saves every file as it is on disk to the side branch, and touches nothing.
        wait_for(lambda: on_side(remote, "draft.ipynb"), timeout=30)
        assert "rebase is in progress" in wait_for(lambda: status(repo).get("waiting"))
        assert git_state(repo) == before
        assert disk_files(repo) == on_disk
        assert on_side(remote, "analysis.py") == "rate = 3  # resolved\n"
        assert on_side(remote, "notes.md") == on_disk["notes.md"].decode()
        assert remote.head() == laptop_head  # main got nothing half-resolved
        assert f"saves your files on branch {SIDE}" in wait_for(
            lambda: SIDE in jupyter.logs() and jupyter.logs()
        )
        # flush says so too, and changes nothing either.
        flushed = run_flush(repo, home, 10)
        assert flushed.returncode == 3, flushed.stderr
        assert "rebase is in progress" in flushed.stderr and NOT_ALL in flushed.stderr
        assert git_state(repo) == before
        assert disk_files(repo) == on_disk

        # The person finishes the rebase: the next save reaches main with everything.
        (repo / "notes.md").write_text("# notes from both\n")
        git(repo, "add", "notes.md", home=home)
        done = run_git(repo, "rebase", "--continue", home=home, GIT_EDITOR="true")
        assert done.returncode == 0, done.stderr
        assert jupyter.save("after.txt", "after the rebase\n").status_code == 201
        wait_for(lambda: "after.txt" in remote.files(), timeout=30)
    assert {"draft.ipynb", "analysis.py", "notes.md"} <= set(remote.files())
    assert remote.show("notes.md") == "# notes from both\n"
    assert remote.show("analysis.py") == "rate = 3  # resolved\n"
    assert remote.head() == git(repo, "rev-parse", "HEAD").strip()
    assert status(repo)["waiting"] is None


# --- Every half-done state: nothing under the person moves, the work reaches the side branch ----


def resolve(name: str, *finish: str) -> Callable[[Path, Path], None]:
    def run(repo: Path, home: Path) -> None:
        (repo / name).write_text("resolved\n")
        git(repo, "add", name, home=home)
        if finish:
            result = run_git(repo, *finish, home=home, GIT_EDITOR="true")
            assert result.returncode == 0, result.stderr

    return run


def git_steps(*steps: tuple[str, ...], fails: bool = False) -> Callable[[Path, Path], None]:
    def run(repo: Path, home: Path) -> None:
        for step in steps:
            result = run_git(repo, *step, home=home, GIT_EDITOR="true")
            assert (result.returncode != 0) if fails else (result.returncode == 0), result

    return run


def stale_index_lock(repo: Path, home: Path) -> None:
    (repo / ".git" / "index.lock").write_bytes(b"left by a git that died\n")


def stale_ref_lock(repo: Path, home: Path) -> None:
    """A git killed while it moved main left refs/heads/main.lock."""
    (repo / ".git" / "refs" / "heads" / "main.lock").write_bytes(b"left by a git that died\n")


def remove_ref_lock(repo: Path, home: Path) -> None:
    (repo / ".git" / "refs" / "heads" / "main.lock").unlink()


def remove_index_lock(repo: Path, home: Path) -> None:
    (repo / ".git" / "index.lock").unlink()


def killed_git_commit(repo: Path, home: Path) -> None:
    """`git commit -a` waits in its editor holding index.lock; then it is killed with -9."""
    (repo / "a.txt").write_text("being committed when git was killed\n")
    editor = subprocess.Popen(
        ["git", "-C", str(repo), "commit", "-a"],
        env={**os.environ, "HOME": str(home), "GIT_EDITOR": "sleep 600;:"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: (repo / ".git" / "index.lock").exists(), timeout=10)
    os.killpg(editor.pid, signal.SIGKILL)
    editor.wait(10)


def stash_pop_conflict(repo: Path, home: Path) -> None:
    """Unresolved conflicts in the index with no operation in progress (a `git stash pop`)."""
    (repo / "a.txt").write_text("stashed\n")
    git(repo, "stash", home=home)
    (repo / "a.txt").write_text("changed after the stash\n")
    git(repo, "commit", "-qam", "after the stash", home=home)
    assert run_git(repo, "stash", "pop", home=home).returncode != 0


def revert_conflict(repo: Path, home: Path) -> None:
    (repo / "a.txt").write_text("main again\n")
    git(repo, "commit", "-qam", "main again", home=home)
    assert run_git(repo, "revert", "--no-edit", "HEAD~1", home=home).returncode != 0


STATES = [
    pytest.param(git_steps(("rebase", "other"), fails=True), resolve("a.txt", "rebase", "--continue"), "a rebase is in progress", id="rebase"),
    pytest.param(git_steps(("merge", "other"), fails=True), resolve("a.txt", "commit", "--no-edit"), "a merge is in progress", id="merge"),
    pytest.param(git_steps(("cherry-pick", "other"), fails=True), resolve("a.txt", "cherry-pick", "--continue"), "a cherry-pick is in progress", id="cherry-pick"),
    pytest.param(revert_conflict, resolve("a.txt", "revert", "--continue"), "a revert is in progress", id="revert"),
    pytest.param(git_steps(("bisect", "start")), git_steps(("bisect", "reset")), "a bisect is in progress", id="bisect"),
    pytest.param(git_steps(("switch", "--detach", "HEAD~1")), git_steps(("switch", "main")), "HEAD is detached", id="detached-head"),
    pytest.param(git_steps(("switch", "-c", "experiment")), git_steps(("switch", "main")), "branch experiment is checked out, not main", id="another-branch"),
    pytest.param(stale_index_lock, remove_index_lock, "remove .git/index.lock if no git command is running", id="stale-index-lock"),
    pytest.param(stale_ref_lock, remove_ref_lock, "remove .git/refs/heads/main.lock if no git command is running", id="stale-ref-lock"),
    pytest.param(killed_git_commit, remove_index_lock, "remove .git/index.lock if no git command is running", id="git-commit-killed"),
    pytest.param(stash_pop_conflict, resolve("a.txt"), "unresolved conflicts in a.txt", id="unmerged-entries"),
]  # fmt: skip


@pytest.mark.parametrize(("enter", "finish", "reason"), STATES)
def test_a_half_done_state_is_never_touched_and_the_work_goes_to_the_side_branch(
    setup, remote, enter, finish, reason
) -> None:
    repo, home = setup
    # Shared history on main, a local branch `other` and a local commit, both changing a.txt.
    (repo / "a.txt").write_text("base\n")
    assert run_flush(repo, home, 30).returncode == 0
    pushed = remote.head()
    git(repo, "switch", "-q", "-c", "other", home=home)
    (repo / "a.txt").write_text("other\n")
    git(repo, "commit", "-qam", "other", home=home)
    git(repo, "switch", "-q", "main", home=home)
    (repo / "a.txt").write_text("main\n")
    git(repo, "commit", "-qam", "main", home=home)

    enter(repo, home)
    (repo / "during.txt").write_text("written while git was half-way\n")
    before, on_disk = git_state(repo), disk_files(repo)

    result = run_flush(repo, home, 10)
    assert result.returncode == 3, result.stderr
    assert reason in result.stderr
    assert f"saves your files on branch {SIDE}" in result.stderr
    assert git_state(repo) == before
    assert disk_files(repo) == on_disk
    assert remote.head() == pushed
    assert on_side(remote, "during.txt") == "written while git was half-way\n"
    assert on_side(remote, "a.txt") == on_disk["a.txt"].decode()
    assert reason in status(repo)["waiting"]
    assert status(repo)["side_branch"] == SIDE

    # Once the person finishes, normal autosave resumes on main.
    finish(repo, home)
    result = run_flush(repo, home, 30)
    assert result.returncode == 0, result.stderr
    assert remote.show("during.txt") == "written while git was half-way\n"
    assert remote.head() == git(repo, "rev-parse", "HEAD").strip()
    assert status(repo)["waiting"] is None


# --- Repositories inside the work folder ---------------------------------------------------------


def test_nested_repositories_are_left_out_and_named_and_the_rest_is_pushed(
    setup, remote, tmp_path
) -> None:
    repo, home = setup
    git(repo, "clone", "-q", remote.url, str(repo / "vendor" / "lib"), home=home)
    git(repo, "init", "-q", str(repo / "scratch"), home=home)
    (repo / "scratch" / "idea.txt").write_text("not in the team's repo\n")
    with running_jupyter(repo, tmp_path / "work", env={"HOME": str(home)}) as jupyter:
        assert jupyter.save("results.txt", "42\n").status_code == 201
        wait_for(lambda: "results.txt" in remote.files(), timeout=30)
        logs = wait_for(lambda: "does NOT back up" in jupyter.logs() and jupyter.logs())
    assert "scratch/, vendor/lib/" in logs
    tree = remote.git("ls-tree", "-r", "main")
    assert "160000" not in tree and "scratch" not in tree and "vendor" not in tree
    assert status(repo)["not_backed_up"] == ["scratch", "vendor/lib"]
    assert (repo / "scratch" / "idea.txt").read_text() == "not in the team's repo\n"

    result = run_flush(repo, home, 30)
    assert result.returncode == 3, result.stderr
    assert NOT_ALL in result.stderr and "scratch/, vendor/lib/" in result.stderr


# --- flush is honest ----------------------------------------------------------------------------


def oversized(repo: Path, home: Path, tmp_path: Path, remote: GitRemote) -> None:
    (repo / "big.bin").write_bytes(b"x" * 20_000)


def nested_empty_repo(repo: Path, home: Path, tmp_path: Path, remote: GitRemote) -> None:
    git(repo, "init", "-q", str(repo / "scratch"), home=home)


def conflict(repo: Path, home: Path, tmp_path: Path, remote: GitRemote) -> None:
    laptop_push(remote, tmp_path, home, {"README.md": "# laptop version\n"})
    (repo / "README.md").write_text("# instance version\n")


def detached(repo: Path, home: Path, tmp_path: Path, remote: GitRemote) -> None:
    git(repo, "switch", "-q", "--detach", "HEAD", home=home)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        pytest.param(oversized, "big.bin", id="file-over-the-limit"),
        pytest.param(nested_empty_repo, "scratch/", id="nested-repository"),
        pytest.param(conflict, f"only on branch {SIDE}", id="conflict"),
        pytest.param(detached, f"only on branch {SIDE}", id="blocked-state"),
    ],
)
def test_flush_exits_3_and_names_what_main_on_the_remote_does_not_have(
    setup, remote, tmp_path, make, named
) -> None:
    repo, home = setup
    (repo / "small.txt").write_text("small\n")
    make(repo, home, tmp_path, remote)
    result = run_flush(repo, home, 15, **SMALL_LIMIT)
    assert result.returncode == 3, result.stderr
    line = next(line for line in result.stderr.splitlines() if NOT_ALL in line)
    assert named in line


def test_flush_exits_0_only_when_main_on_the_remote_has_everything(setup, remote) -> None:
    repo, home = setup
    (repo / "small.txt").write_text("small\n")
    result = run_flush(repo, home, 15, **SMALL_LIMIT)
    assert result.returncode == 0, result.stderr
    assert "the remote has everything" in result.stderr
    assert remote.head() == git(repo, "rev-parse", "HEAD").strip()


def test_a_change_that_arrives_after_the_commit_is_named_as_not_on_main(
    setup, remote, caplog, monkeypatch
) -> None:
    repo_path, home = setup
    monkeypatch.setenv("HOME", str(home))
    repo = git_autosave.Repo(repo_path)
    (repo_path / "first.txt").write_text("committed\n")
    outcome = repo.sync()
    assert remote.show("first.txt") == "committed\n"
    (repo_path / "late.txt").write_text("arrived after the commit\n")
    with caplog.at_level(logging.INFO, logger="jupyter_on_demand.autosave"):
        code = git_autosave.report(repo, git_autosave.not_on_home(repo, outcome))
    assert code == 3
    assert f"{NOT_ALL}: changes not committed yet: late.txt" in caplog.text


# --- The remote moved ahead ----------------------------------------------------------------------


def outgrow_the_limit(repo: Path, home: Path, name: str) -> bytes:
    """`name` committed and pushed at "v1", then grown on disk past SMALL_LIMIT; its new bytes."""
    (repo / name).write_text("v1\n")
    assert run_flush(repo, home, 30, **SMALL_LIMIT).returncode == 0
    grown = b"1,2,3\n" * 5_000  # 30 KB: over the 10 KB limit
    (repo / name).write_bytes(grown)
    return grown


def test_a_tracked_file_over_the_limit_never_stops_merges_and_its_bytes_stay(
    setup, remote, tmp_path
) -> None:
    repo, home = setup
    grown = outgrow_the_limit(repo, home, "data.csv")
    written = (repo / "data.csv").stat()
    laptop_push(remote, tmp_path, home, {"laptop.txt": "from the laptop\n"})
    env = {"HOME": str(home), **SMALL_LIMIT}
    with running_jupyter(repo, tmp_path / "work", env=env) as jupyter:
        assert jupyter.save("after.txt", "saved after\n").status_code == 201
        wait_for(lambda: "after.txt" in remote.files(), timeout=30)
    assert "laptop.txt" in remote.files()
    assert remote.show("data.csv") == "v1\n"
    assert git(repo, "show", "HEAD:data.csv") == "v1\n"
    assert (repo / "data.csv").read_bytes() == grown
    # Not even written back with the same bytes (as a stash and pop would): never touched.
    now = (repo / "data.csv").stat()
    assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert (repo / "laptop.txt").read_text() == "from the laptop\n"
    assert status(repo)["side_branch"] is None


def test_a_merge_that_would_overwrite_a_changed_file_goes_to_the_side_branch_untouched(
    setup, remote, tmp_path
) -> None:
    repo, home = setup
    outgrow_the_limit(repo, home, "data.csv")  # changed here, not committed
    laptop_push(remote, tmp_path, home, {"data.csv": "v2 from the laptop\n"})
    (repo / "notes.txt").write_text("notes\n")
    before, on_disk = git_state(repo), disk_files(repo)
    result = run_flush(repo, home, 15, **SMALL_LIMIT)
    assert disk_files(repo) == on_disk
    assert result.returncode == 3, result.stderr
    assert "AUTOSAVE CONFLICT" in result.stderr and "data.csv" in result.stderr
    assert git_state(repo)["checked_out"] == before["checked_out"]
    assert on_side(remote, "notes.txt") == "notes\n"
    assert remote.show("data.csv") == "v2 from the laptop\n"


def test_a_merge_never_overwrites_an_ignored_file_on_disk(setup, remote, tmp_path) -> None:
    repo, home = setup
    laptop = tmp_path / "laptop"
    git(repo, "clone", "-q", remote.url, str(laptop), home=home)
    (laptop / ".env").write_text("FROM_THE_LAPTOP=1\n")
    git(laptop, "add", "-f", ".env", home=home)
    git(laptop, "commit", "-qm", "a .env forced in", home=home)
    git(laptop, "push", "-q", "origin", "HEAD:main", home=home)
    (repo / ".env").write_text("SECRET=only here\n")  # ignored by autosave's excludes
    (repo / "notes.txt").write_text("notes\n")
    result = run_flush(repo, home, 15)
    assert (repo / ".env").read_text() == "SECRET=only here\n"
    assert result.returncode == 3, result.stderr
    assert ".env" in json.dumps(status(repo)["conflict"])
    assert on_side(remote, "notes.txt") == "notes\n"


# --- Files over the limit that a person staged; pushes the remote refuses for good ---------------

GITHUB_LIMIT = 40_000  # the remote refuses bigger blobs: GitHub's 100 MB, scaled like SMALL_LIMIT


@pytest.mark.parametrize("tracked", [False, True], ids=["new-file", "tracked-file"])
def test_a_file_a_person_staged_over_the_limit_never_reaches_a_pushed_commit(
    setup, remote, tracked
) -> None:
    repo, home = setup
    refuse_blobs_over(remote, GITHUB_LIMIT)
    if tracked:
        (repo / "data.bin").write_text("v1\n")
        assert run_flush(repo, home, 30, **SMALL_LIMIT).returncode == 0
    big = os.urandom(60_000)  # "60 MB": over the 10 KB limit and over the remote's
    (repo / "data.bin").write_bytes(big)
    git(repo, "add", "data.bin", home=home)  # a person stages it in a terminal
    staged = git(repo, "ls-files", "-s", "data.bin")
    (repo / "notes.txt").write_text("notes\n")

    result = run_flush(repo, home, 15, **SMALL_LIMIT)
    assert result.returncode == 3, result.stderr
    assert "files over the size limit: data.bin" in result.stderr
    assert "git restore --staged data.bin" in result.stderr
    assert remote.show("notes.txt") == "notes\n"
    assert remote.head() == git(repo, "rev-parse", "HEAD").strip()
    if tracked:
        assert remote.show("data.bin") == "v1\n"  # HEAD's version stays in the commit
    else:
        assert "data.bin" not in remote.files()
    # The person's index and file are as they left them: still staged, same bytes.
    assert git(repo, "ls-files", "-s", "data.bin") == staged
    assert (repo / "data.bin").read_bytes() == big
    assert status(repo)["skipped"] == ["data.bin"]
    assert status(repo)["last_error"] is None

    # Later saves keep reaching the remote.
    (repo / "later.txt").write_text("later\n")
    result = run_flush(repo, home, 15, **SMALL_LIMIT)
    assert result.returncode == 3, result.stderr
    assert remote.show("later.txt") == "later\n"


def test_a_push_the_remote_refuses_for_good_is_named_with_what_to_do_and_flush_exits_1(
    setup, remote
) -> None:
    repo, home = setup
    refuse_blobs_over(remote, GITHUB_LIMIT)
    # Committed in a terminal: it is in HEAD, and autosave never rewrites a person's commits.
    (repo / "model.bin").write_bytes(os.urandom(60_000))
    git(repo, "add", "model.bin", home=home)
    git(repo, "commit", "-qm", "the model", home=home)
    (repo / "notes.txt").write_text("notes\n")

    result = run_flush(repo, home, 20)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("AUTOSAVE PUSH REFUSED") == 1  # not retried: it would not help
    assert "retrying will not help" in result.stderr
    error = status(repo)["last_error"]
    assert "GH001" in error and "refused the push of main" in error
    assert "git log --stat origin/main..main" in error
    assert "notes.txt" in git(repo, "ls-tree", "--name-only", "HEAD")  # committed here
    assert "notes.txt" not in remote.files()


# --- Virtualenvs and autosave's own excludes -----------------------------------------------------

OLDER_EXCLUDES = "\n# jupyter-on-demand autosave\n.ipynb_checkpoints/\n__pycache__/\n.venv/\nvenv/\n.virtualenv/\nenv/\n.env\n.env.*\n.Trash-*/\n"  # fmt: skip


def test_code_in_a_folder_named_env_is_backed_up(setup, remote) -> None:
    repo, home = setup
    exclude = repo / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + OLDER_EXCLUDES)  # as an older autosave left it
    (repo / "rl" / "env").mkdir(parents=True)
    (repo / "rl" / "env" / "cartpole.py").write_text("class CartPole: ...\n")
    result = run_flush(repo, home, 30)
    assert result.returncode == 0, result.stderr
    assert remote.show("rl/env/cartpole.py") == "class CartPole: ...\n"
    assert "env/" not in exclude.read_text().splitlines()
    assert ".venv/" in exclude.read_text().splitlines()


@pytest.mark.parametrize("folder", ["rl/env", ".venv"])
def test_a_virtualenv_is_left_out_and_named_and_flush_exits_3(setup, remote, folder) -> None:
    repo, home = setup
    venv = [sys.executable, "-m", "venv", "--without-pip", str(repo / folder)]
    subprocess.run(venv, check=True)
    (repo / "rl").mkdir(exist_ok=True)
    (repo / "rl" / "train.py").write_text("train()\n")
    result = run_flush(repo, home, 30)
    assert result.returncode == 3, result.stderr
    line = next(line for line in result.stderr.splitlines() if NOT_ALL in line)
    assert f"not backed up (a virtualenv): {folder}/" in line
    assert remote.show("rl/train.py") == "train()\n"
    assert not [name for name in remote.files() if name.startswith(f"{folder}/")]
    assert status(repo)["virtualenvs"] == [folder]


def write(path: Path, text: str = "x = 1\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("make", "code", "named"),
    [
        pytest.param(lambda r: write(r / "venv" / "model.py"), 3, "venv/", id="venv-holding-code"),
        pytest.param(lambda r: write(r / ".env", "KEY=1\n"), 3, ".env", id="dot-env"),
        pytest.param(
            lambda r: (write(r / ".gitignore", "scratch/\n"), write(r / "scratch" / "tmp.csv")),
            0,
            None,
            id="the-teams-gitignore",
        ),
    ],
)
def test_flush_names_what_autosaves_own_excludes_hide_but_not_what_the_team_ignores(
    setup, remote, make, code, named
) -> None:
    repo, home = setup
    make(repo)
    (repo / "small.txt").write_text("small\n")
    result = run_flush(repo, home, 15)
    assert result.returncode == code, result.stderr
    assert remote.show("small.txt") == "small\n"
    if named:
        line = next(line for line in result.stderr.splitlines() if NOT_ALL in line)
        assert "left out by autosave's own excludes in .git/info/exclude" in line
        assert named in line
        assert status(repo)["excluded"] == [named]
    else:
        assert "the remote has everything" in result.stderr


# --- The side branch: a teammate's commits on it are kept -----------------------------------------


def test_commits_a_teammate_pushed_to_the_side_branch_are_never_dropped(
    setup, remote, tmp_path
) -> None:
    repo, home = setup
    laptop_push(remote, tmp_path, home, {"README.md": "# laptop version\n"})
    (repo / "README.md").write_text("# instance version\n")
    assert run_flush(repo, home, 15).returncode == 3
    assert on_side(remote, "README.md") == "# instance version\n"

    # A teammate resolves the conflict on the side branch (what GitHub's editor does).
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", "-b", SIDE, remote.url, str(mate), home=home)
    assert run_git(mate, "merge", "origin/main", home=home).returncode != 0
    (mate / "README.md").write_text("# resolved by a teammate\n")
    git(mate, "commit", "-qam", "resolve", home=home)
    git(mate, "push", "-q", "origin", f"HEAD:{SIDE}", home=home)
    resolution = remote.head(SIDE)

    # The machine keeps saving: each push keeps the resolution, in the history and in the files.
    for name in ("more.txt", "more2.txt"):
        (repo / name).write_text(f"{name}\n")
        result = run_flush(repo, home, 15)
        assert result.returncode == 3, result.stderr
        assert on_side(remote, name) == f"{name}\n"
        assert remote.git("merge-base", "--is-ancestor", resolution, SIDE) == ""
        assert on_side(remote, "README.md") == "# resolved by a teammate\n"
    assert (repo / "README.md").read_text() == "# instance version\n"  # never touched here

    # The teammate merges the side branch into main: autosave's next save brings it home.
    git(mate, "pull", "-q", "--no-rebase", "origin", SIDE, home=home)
    git(mate, "push", "-q", "origin", "HEAD:main", home=home)
    (repo / "after.txt").write_text("after\n")
    result = run_flush(repo, home, 30)
    assert result.returncode == 0, result.stderr
    assert remote.show("README.md") == "# resolved by a teammate\n"
    assert {"more.txt", "more2.txt", "after.txt"} <= set(remote.files())


# --- A git that runs too long ----------------------------------------------------------------------


@pytest.fixture
def slow(setup, monkeypatch):
    """A Repo on the clone whose git commands may take 10 s, and a git that is slow (30 s) while
    it holds .git/index.lock; yields (repo, the marker that keeps git slow)."""
    repo_path, home = setup
    monkeypatch.setenv("HOME", str(home))
    marker = slow_git_while_index_locked(repo_path)
    repo = git_autosave.Repo(repo_path)
    repo.timeout = 10  # not less: the quick commands, a push among them, must fit on a loaded CI
    yield repo, marker
    marker.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("stop_signal", "how"),
    [
        pytest.param(signal.SIGTERM, "stopped with SIGTERM", id="sigterm"),
        # A git that does not stop on SIGTERM (stuck in the kernel, say): SIGSTOP plays it.
        pytest.param(signal.SIGSTOP, "killed its own git", id="sigkill-after-sigterm"),
    ],
)
def test_a_git_that_runs_too_long_is_stopped_without_leaving_its_lock_behind(
    slow, remote, monkeypatch, caplog, stop_signal, how
) -> None:
    repo, marker = slow
    monkeypatch.setattr(autosave_run, "STOP_SIGNAL", stop_signal)
    monkeypatch.setattr(autosave_run, "STOP_GRACE", 1.0)
    (repo.path / "a.txt").write_text("a\n")
    with caplog.at_level(logging.INFO, logger="jupyter_on_demand.autosave"):
        with pytest.raises(subprocess.TimeoutExpired):
            repo.sync()
    assert not (repo.git_dir / "index.lock").exists()
    assert "timed out" in status(repo.path)["last_error"]
    if stop_signal == signal.SIGSTOP:
        assert f"removed the lock file that git had created: {repo.git_dir / 'index.lock'}" in (
            caplog.text
        )
    # The next sync works: nothing for a person to clean up.
    marker.unlink()
    repo.timeout = 120.0  # git_autosave's own
    outcome = repo.sync()
    assert outcome.pushed_to == "main" and outcome.waiting is None
    assert remote.show("a.txt") == "a\n"


def test_a_lock_a_persons_git_holds_stays_when_autosave_kills_its_own_git(
    setup, remote, monkeypatch
) -> None:
    repo_path, home = setup
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(autosave_run, "STOP_SIGNAL", signal.SIGSTOP)  # the SIGKILL path
    monkeypatch.setattr(autosave_run, "STOP_GRACE", 1.0)
    marker = hang_pushes_and_take_index_lock(remote, repo_path)
    try:
        repo = git_autosave.Repo(repo_path)
        repo.timeout = 10  # the push hangs 30 s; what comes before it must fit on a loaded CI
        (repo_path / "a.txt").write_text("a\n")
        with pytest.raises(subprocess.TimeoutExpired):
            repo.sync()  # the push hangs; meanwhile the person's git took index.lock
    finally:
        marker.unlink()
    lock = repo_path / ".git" / "index.lock"
    assert lock.read_text() == "a person's git commit\n"


def test_a_broken_gitconfig_at_the_first_save_never_turns_autosave_off_for_the_session(
    remote, tmp_path
) -> None:
    repo, home = instance_clone(remote, tmp_path)
    config = home / ".gitconfig"
    good = config.read_text()
    config.write_text(good + "[core\n  typo\n")  # a teammate's typo
    with running_jupyter(repo, tmp_path / "work", env={"HOME": str(home)}) as jupyter:
        assert jupyter.save("first.py", "a = 1\n").status_code in (200, 201)
        wait_for(lambda: "autosave can't work on" in jupyter.logs(), timeout=20)
        config.write_text(good)  # fixed
        assert jupyter.save("second.py", "b = 2\n").status_code in (200, 201)
        wait_for(lambda: {"first.py", "second.py"} <= set(remote.files()), timeout=30)
