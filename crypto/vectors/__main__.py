"""``python -m crypto.vectors DIR [--verbose]``: run every *.json vector file in DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crypto.vectors import run_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crypto.vectors", description=__doc__)
    parser.add_argument("directory", type=Path, help="folder holding the *.json vector files")
    parser.add_argument("--verbose", action="store_true", help="print failures to stderr")
    args = parser.parse_args(argv)
    files = sorted(args.directory.glob("*.json"))
    if not files:
        parser.error(f"no *.json vector files in {args.directory}")
    passed = failed = 0
    for path in files:
        result = run_file(path)
        print(f"{path.name}: {result.passed} passed, {result.failed} failed, "
              f"{result.skipped} skipped", flush=True)
        if args.verbose:
            for line in result.failures:
                print(line, file=sys.stderr)
        passed += result.passed
        failed += result.failed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
