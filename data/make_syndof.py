#!/usr/bin/env python
"""`python data/make_syndof.py --help`; the same command is installed as `dmenet-syndof` (code: dmenet/cli/make_syndof.py).

Needs the dmenet package installed (`pip install -r requirements.txt` installs it in editable mode).
"""
import sys

from dmenet.cli.make_syndof import main

if __name__ == "__main__":
    sys.exit(main())
