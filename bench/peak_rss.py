"""Run a Python script (or `-c code`) and write this process's peak RSS (VmHWM, kB) to a file.

ru_maxrss of a spawned child includes the large benchmark process it was forked or vforked from;
VmHWM belongs to the child's own address space after exec, so both the checker and its
`python -c pass` baseline are measured the same, honest way.

    python bench/peak_rss.py OUT_FILE (SCRIPT | -c CODE) [ARGS...]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    out, target, *args = sys.argv[1:]
    try:
        if target == "-c":
            exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        else:
            sys.argv = [target, *args]
            sys.path.insert(0, str(Path(target).resolve().parent))  # as `python SCRIPT` does
            runpy.run_path(target, run_name="__main__")
    except SystemExit:
        pass
    finally:
        Path(out).write_text(str(peak_kb()))


if __name__ == "__main__":
    main()
