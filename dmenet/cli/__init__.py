"""Command-line front ends (infer, train, evaluate, make_syndof): argument parsing, then calls into dmenet.

Each module has a ``main(argv=None) -> exit code``; the repository's top-level scripts and the
installed ``dmenet-*`` commands both call it.
"""
