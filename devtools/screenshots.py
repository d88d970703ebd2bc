"""Screenshots of every page of the web companion, at phone (390×844) and desktop (1280×800)
size, into docs/screenshots/: runs the browser journey (tests/e2e/test_web.py) against fresh test
homeservers with LAIWANG_SCREENSHOTS set.

    python -m devtools.screenshots [--out docs/screenshots]

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LAIWANG_SCREENSHOTS": str(out), "CI": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-x", "tests/e2e/test_web.py", "-k", "journey"]
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode == 0:
        print(f"screenshots in {out}:", *sorted(p.name for p in out.glob("*.png")), sep="\n  ")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
