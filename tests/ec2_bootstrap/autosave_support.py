"""A clone of the test remote set up as boot.py sets up the instance, and Jupyter serving it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from demo.git_remote import GitRemote


def git(repo: Path, *args: str, home: Path | None = None) -> str:
    env = None
    if home is not None:
        import os

        env = {**os.environ, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


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
