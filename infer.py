#!/usr/bin/env python
"""`python infer.py --help`; the same command is installed as `dmenet-infer` (code: dmenet/cli/infer.py)."""
import sys

from dmenet.cli.infer import command

if __name__ == "__main__":
    sys.exit(command())
