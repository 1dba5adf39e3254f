"""Write or compare the lock file (constraints.txt): every installed distribution at its exact
version, except this project itself. torch keeps its public version (the machine's CPU wheel
reports 2.13.0+cpu; `torch==2.13.0` matches it).

    python scripts/lock.py --write constraints.txt   # from the current environment
    python scripts/lock.py --diff constraints.txt    # what the current environment changed
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from pathlib import Path

HEADER = (
    "# The exact set the test suite last passed with; scripts/setup.sh installs through it.\n"
    "# Regenerate with `bash scripts/check_latest.sh --write-lock` (resolves the newest releases,\n"
    "# runs the fast tests, then writes this file from that environment).\n"
)
SELF = "seedling-studio"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    pins = {}
    for dist in md.distributions():
        name = normalise(dist.metadata["Name"])
        if name in (SELF, "pip", "setuptools", "wheel"):
            continue
        pins[name] = dist.version.split("+")[0]
    return dict(sorted(pins.items()))


def read(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", type=Path, metavar="FILE")
    g.add_argument("--diff", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    now = installed()
    if args.write:
        args.write.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in now.items()))
        print(f"wrote {len(now)} pins to {args.write}")
        return 0
    locked = read(args.diff)
    moved = [(n, locked.get(n, "-"), now.get(n, "-")) for n in sorted(set(locked) | set(now))
             if locked.get(n) != now.get(n)]
    print(f"| package | {args.diff} | now |\n|---|---|---|")
    for name, old, new in moved:
        print(f"| {name} | {old} | {new} |")
    print(f"{len(moved)} of {len(set(locked) | set(now))} distributions differ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
