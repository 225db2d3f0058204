#!/usr/bin/env python
"""`python evaluate.py --help`; the same command is installed as `dmenet-evaluate` (code: dmenet/cli/evaluate.py)."""
import sys

from dmenet.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
