"""A clone of the test remote set up as boot.py sets up the instance, and Jupyter serving it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from demo.git_remote import GitRemote

AUTOSAVE = Path(__file__).resolve().parents[2] / "ec2_bootstrap" / "git_autosave.py"
# What a half-done git operation leaves in the git dir (and git's own lock on the index).
IN_PROGRESS = (
    "rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "sequencer",
    "BISECT_LOG", "index.lock",
)  # fmt: skip


def git(repo: Path, *args: str, home: Path | None = None) -> str:
    return run_git(repo, *args, home=home, check=True).stdout


def run_git(
    repo: Path, *args: str, home: Path | None = None, check: bool = False, **env: str
) -> subprocess.CompletedProcess:
    """git as the person types it in a Jupyter terminal (HOME with the instance's config)."""
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **env}
    if home is not None:
        environment["HOME"] = str(home)
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=check,
        env=environment,
    )


def run_flush(
    repo: Path, home: Path, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """`git_autosave.py flush` as the shutdown unit and the idle checker run it."""
    return subprocess.run(
        [sys.executable, str(AUTOSAVE), "flush", "--repo", str(repo), "--timeout", str(timeout)],
        capture_output=True,
        text=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", **env},
        timeout=180,
        check=False,
    )


def disk_files(root: Path) -> dict[str, bytes]:
    """Every file under the work folder (nested repositories' too), but .git folders."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if ".git" in relative.parts:
            continue
        if path.is_symlink():
            files[str(relative)] = b"symlink -> " + os.readlink(path).encode()
        elif path.is_file():
            files[str(relative)] = path.read_bytes()
    return files


def git_state(repo: Path) -> dict[str, object]:
    """What autosave must never change under the person: HEAD, the checked-out branch, every
    branch but autosave's own, the index (its stages and its bytes) and the operation in progress."""
    git_dir = repo / ".git"
    index = git_dir / "index"
    return {
        "HEAD": run_git(repo, "rev-parse", "HEAD").stdout,
        "checked_out": run_git(repo, "symbolic-ref", "-q", "HEAD").stdout,
        "branches": [
            line
            for line in run_git(
                repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"
            ).stdout.splitlines()
            if not line.startswith("refs/heads/autosave/")
        ],
        "index": run_git(repo, "ls-files", "-s").stdout,
        "index_sha256": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "in_progress": [name for name in IN_PROGRESS if (git_dir / name).exists()],
    }


def instance_clone(
    remote: GitRemote, tmp_path: Path, token: str | None = None
) -> tuple[Path, Path]:
    """(repo, home): HOME with a git identity and credential file, like boot.py writes them."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    credentials = home / ".git-credentials"
    credentials.write_text(remote.credential_line(token=token))
    credentials.chmod(0o600)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Jupyter autosave\n\temail = autosave@example.invalid\n"
        "[pull]\n\trebase = true\n[rebase]\n\tautoStash = true\n"
        f'[credential]\n\thelper = "!f() {{ test \\"$1\\" = get && git credential-store --file={credentials} get; }}; f"\n'
    )
    seed = tmp_path / "seed"
    subprocess.run(
        ["git", "clone", "-q", remote.url, str(seed)],
        check=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    (seed / "README.md").write_text("# team\n")
    git(seed, "add", ".", home=home)
    git(seed, "commit", "-qm", "init", home=home)
    git(seed, "push", "-q", "origin", "HEAD:main", home=home)
    repo = tmp_path / "repo"
    subprocess.run(
        ["git", "clone", "-q", remote.url, str(repo)],
        check=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    return repo, home


def laptop_push(
    remote: GitRemote, tmp_path: Path, home: Path, files: dict[str, str], message: str = "laptop"
) -> None:
    """A teammate pushes from a laptop."""
    laptop = tmp_path / "laptop"
    if not laptop.exists():
        subprocess.run(
            ["git", "clone", "-q", remote.url, str(laptop)],
            check=True,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
    else:
        git(laptop, "pull", "-q", "--rebase", "origin", "main", home=home)
    for name, content in files.items():
        (laptop / name).write_text(content)
    git(laptop, "add", ".", home=home)
    git(laptop, "commit", "-qm", message, home=home)
    git(laptop, "push", "-q", "origin", "HEAD:main", home=home)


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def refuse_blobs_over(remote: GitRemote, limit: int) -> None:
    """GitHub's GH001 check as a pre-receive hook on the remote, at `limit` bytes: a push that
    brings a bigger blob is refused, with GitHub's words."""
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "zero=0000000000000000000000000000000000000000\n"
        "while read old new ref; do\n"
        '  [ "$new" = "$zero" ] && continue\n'
        '  if [ "$old" = "$zero" ]; then range="$new --not --all"; else range="$old..$new"; fi\n'
        "  big=$(git rev-list --objects $range |\n"
        "    git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' |\n"
        f"    awk '$1 == \"blob\" && $2 > {limit} {{print $3}}')\n"
        '  if [ -n "$big" ]; then\n'
        '    echo "error: GH001: Large files detected. You may want to try Git Large File Storage" >&2\n'
        '    echo "error: File $big exceeds the file size limit of ' + str(limit) + ' bytes" >&2\n'
        "    exit 1\n"
        "  fi\n"
        "done\n"
    )
    hook.chmod(0o755)


def slow_git_while_index_locked(repo: Path) -> Path:
    """A git that takes long while it holds .git/index.lock, as on a huge tree or a hung disk:
    a core.fsmonitor hook that sleeps then. Returns the marker file; removing it ends the slowness."""
    marker = repo.parent / "git-is-slow"
    marker.write_text("")
    hook = repo.parent / "slow-fsmonitor.sh"
    hook.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{marker}" ] && [ -e .git/index.lock ]; then sleep 30; fi\n'
        "exit 1  # no answer: git looks at every file itself\n"
    )
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    return marker


def hang_pushes_and_take_index_lock(remote: GitRemote, repo: Path) -> Path:
    """While a push waits on the remote, a person's git takes .git/index.lock in `repo` (the
    remote's pre-receive hook plays both). Returns the marker file; removing it ends the wait."""
    marker = repo.parent / "push-hangs"
    marker.write_text("")
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f'echo "a person\'s git commit" > {repo / ".git" / "index.lock"}\n'
        f'for i in $(seq 300); do [ -e "{marker}" ] || exit 1; sleep 0.1; done\n'
        "exit 1\n"
    )
    hook.chmod(0o755)
    return marker
