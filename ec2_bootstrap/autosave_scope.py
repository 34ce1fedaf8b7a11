"""What autosave leaves out of its commits, and why (autosave_git.py commits everything else).

- Files over the size limit (JUPYTER_AUTOSAVE_MAX_MB, 50 MB). GitHub refuses a push that holds a
  file over 100 MB, and every later push too, since the file stays in the commits to push. A file
  on disk over the limit is never staged; and every blob that the tree about to be committed adds
  or changes is checked too, so a file a person staged (`git add`) is caught: the commit keeps the
  parent's version of it (or leaves it out when it is new), while the person's index and files
  keep theirs.
- Git repositories inside the work folder: `git add` would record only their commit.
- Virtualenvs, found by what makes a folder one (`pyvenv.cfg`: venv, virtualenv, uv; or
  `conda-meta/history`: a conda environment), whatever the folder is called: a name like `env/`
  also names code (`rl/env/cartpole.py`).
- Autosave's own excludes, written to `.git/info/exclude` (the team's `.gitignore` is never
  touched, and what it ignores is the team's choice). `.venv/`, `venv/` and `.virtualenv/` stay
  excluded by name: they are the names venv, virtualenv and uv give a virtualenv, and a package
  called `venv` would shadow the standard library's. Whatever these excludes hide but Jupyter's
  checkpoint copies, bytecode caches and trash (copies, regenerated, deleted) is named: a
  virtualenv as one, anything else (`.env`, a `venv/` holding code) as left out, so `flush` never
  says the remote has everything while an exclude hides a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autosave_git import Repo

DEFAULT_EXCLUDES = (
    ".ipynb_checkpoints/",
    "__pycache__/",
    ".venv/",
    "venv/",
    ".virtualenv/",
    ".env",
    ".env.*",
    ".Trash-*/",
)
UNNAMED_EXCLUDES = (".ipynb_checkpoints/", "__pycache__/", ".Trash-*/")  # copies, caches, trash
# Written by older versions into autosave's block of .git/info/exclude; removed from that block.
RETIRED_EXCLUDES = ("env/",)
EXCLUDE_HEADER = "# jupyter-on-demand autosave"
DEFAULT_GITIGNORE = (
    "\n".join(["# Added by jupyter-on-demand; edit freely.", *DEFAULT_EXCLUDES]) + "\n"
)
VIRTUALENV_MARKERS = ("pyvenv.cfg", "conda-meta/history")
SCRATCH_INDEX = "jod-autosave-commit.index"
BLOB_MODES = ("100644", "100755")


@dataclass
class LeftOut:
    """What one commit or snapshot leaves out; paths relative to the work folder."""

    big: list[str] = field(default_factory=list)  # over the size limit
    nested: list[str] = field(default_factory=list)  # repositories inside the work folder
    virtualenvs: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # hidden by autosave's own excludes
    # What `git add -A` must skip: the above that no exclude hides already (git add refuses a
    # pathspec, even an excluding one, that names an ignored path).
    not_staged: list[str] = field(default_factory=list)


def ensure_excludes(git_dir: Path) -> None:
    """Autosave's excludes in .git/info/exclude; lines it wrote once and retired are removed."""
    exclude = git_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    current = exclude.read_text() if exclude.exists() else ""
    lines, in_block = [], False
    for line in current.splitlines():
        in_block = line == EXCLUDE_HEADER or (in_block and line.strip() != "")
        if not (in_block and line in RETIRED_EXCLUDES):
            lines.append(line)
    missing = [line for line in DEFAULT_EXCLUDES if line not in lines]
    if missing:
        lines += ["", EXCLUDE_HEADER, *missing]
    text = "\n".join(lines) + "\n"
    if text != current:
        tmp = exclude.with_name("exclude.jod-autosave.tmp")
        tmp.write_text(text)
        os.replace(tmp, exclude)


def left_out(repo: Repo, index: Path | None = None) -> LeftOut:
    """What `git add -A` must skip, and what autosave's excludes hide, in the work folder.

    A nested repository is listed by ls-files as `path/` (untracked) or is a gitlink (mode
    160000, tracked).
    """
    listed = [
        name
        for name in repo.git(
            "ls-files", "-z", "--others", "--modified", "--exclude-standard", index=index
        ).split("\0")
        if name
    ]
    nested = {name.rstrip("/") for name in listed if name.endswith("/")}
    for entry in repo.git("ls-files", "-s", "-z", index=index).split("\0"):
        if entry.startswith("160000 "):
            nested.add(entry.split("\t", 1)[1])
    virtualenvs = virtualenv_roots(listed)
    big = set()
    for name in listed:
        if name.endswith("/") or within(name, virtualenvs):
            continue
        try:
            if (repo.path / name).lstat().st_size > repo.max_bytes:
                big.add(name)
        except OSError:
            continue  # deleted since: `git add -A` records the deletion
    not_staged = sorted({*big, *nested, *virtualenvs})
    excluded = []
    for name in hidden_by_own_excludes(repo, index):
        if name.endswith("/") and is_virtualenv(repo.path / name):
            virtualenvs.add(name.rstrip("/"))
        else:
            excluded.append(name)
    return LeftOut(
        sorted(big - nested), sorted(nested), sorted(virtualenvs), sorted(excluded), not_staged
    )


def within(name: str, folders: set[str]) -> bool:
    return any(name == folder or name.startswith(f"{folder}/") for folder in folders)


def is_virtualenv(folder: Path) -> bool:
    return any((folder / marker).is_file() for marker in VIRTUALENV_MARKERS)


def virtualenv_roots(listed: list[str]) -> set[str]:
    """The outermost folders among the listed files that hold a virtualenv marker at their top."""
    roots = set()
    for name in listed:
        for marker in VIRTUALENV_MARKERS:
            if name.endswith(f"/{marker}"):
                roots.add(name[: -len(marker) - 1])
    return {root for root in roots if not within(root, roots - {root})}


def hidden_by_own_excludes(repo: Repo, index: Path | None) -> list[str]:
    """Untracked paths (`folder/` for a whole folder) that are ignored because of one of
    autosave's own lines in .git/info/exclude, not the team's rules; Jupyter's copies, caches
    and trash aside."""
    ignored = repo.git(
        "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory", index=index
    )
    if not ignored.strip("\0"):
        return []
    # -v names the rule that decides, so a path the team's .gitignore ignores too is theirs.
    verdicts = repo.git(
        "check-ignore", "-v", "-z", "--stdin", index=index, check=False, stdin_text=ignored
    ).split("\0")
    own = (repo.git_dir / "info" / "exclude").resolve()
    hidden = []
    for i in range(0, len(verdicts) - 3, 4):
        source, _line, pattern, name = verdicts[i : i + 4]
        if pattern not in DEFAULT_EXCLUDES or pattern in UNNAMED_EXCLUDES:
            continue
        if (repo.path / source).resolve() == own:
            hidden.append(name)
    return hidden


def without_oversized(repo: Repo, tree: str, base: str | None) -> tuple[str, list[str]]:
    """(`tree` without them, their paths): files over the size limit that `tree` adds or
    changes compared with the commit `base`. Each keeps base's version, or is left out when new;
    the tree is rebuilt in a scratch index, never the person's."""
    base_tree = f"{base}^{{tree}}" if base else empty_tree(repo)
    raw = repo.git("diff-tree", "-r", "-z", "--no-renames", base_tree, tree).split("\0")
    changes = []  # (old mode, old id, new id, status, path)
    for meta, path in zip(raw[0::2], raw[1::2], strict=False):
        old_mode, new_mode, old_id, new_id, status = meta.lstrip(":").split()
        if status in ("A", "M", "T") and new_mode in BLOB_MODES:
            changes.append((old_mode, old_id, new_id, status, path))
    if not changes:
        return tree, []
    sizes = repo.git(
        "cat-file",
        "--batch-check=%(objectname) %(objectsize)",
        stdin_text="".join(f"{change[2]}\n" for change in changes),
    )
    size_of = dict(line.split()[:2] for line in sizes.splitlines() if not line.endswith("missing"))
    big = [c for c in changes if int(size_of.get(c[2], "0")) > repo.max_bytes]
    if not big:
        return tree, []
    entries = [
        f"0 {'0' * len(new_id)}\t{path}" if status == "A" else f"{old_mode} {old_id}\t{path}"
        for old_mode, old_id, new_id, status, path in big
    ]
    scratch = repo.git_dir / SCRATCH_INDEX
    try:
        repo.git("read-tree", tree, index=scratch)
        repo.git(
            "update-index",
            "-z",
            "--index-info",
            index=scratch,
            stdin_text="\0".join(entries) + "\0",
        )
        tree = repo.git("write-tree", index=scratch).strip()
    finally:
        scratch.unlink(missing_ok=True)
    return tree, sorted(change[4] for change in big)


def empty_tree(repo: Repo) -> str:
    return repo.git("hash-object", "-t", "tree", "--stdin", stdin_text="").strip()
