"""Benchmarks (`python -m bench`). They import the two deployables' top-level modules as their
runtimes do (Lambda and the instance put those folders on sys.path); pytest does the same for
the tests through its `pythonpath` setting, which `python -m bench` doesn't read."""

import sys
from pathlib import Path

for _folder in ("lambda_src", "ec2_bootstrap"):
    _path = str(Path(__file__).resolve().parent.parent / _folder)
    if _path not in sys.path:
        sys.path.append(_path)
