#!/usr/bin/env python
"""`python train.py --help`; the same command is installed as `dmenet-train` (code: dmenet/cli/train.py)."""
import sys

from dmenet.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
