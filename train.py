"""The readable training recipe: `python train.py` == `ecc train` (added with the agents issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print("training arrives with the agents issue; see `ecc --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
