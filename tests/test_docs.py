"""The documentation stays true: the site builds strictly, the README's example runs, its commands parse.

The README is the front page and the source of what is checked: its Python blocks marked
``<!-- test:run -->`` are run as written (the shared Park'17 weights stand in for the download), and
every ``python infer.py|train.py|evaluate.py|data/make_syndof.py`` line of a bash block, in the README
and in docs/, is parsed by that command's own argument parser.
"""
import argparse
import ast
import os
import pathlib
import re
import shlex
import subprocess
import sys
from unittest import mock

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN_MARKER = "<!-- test:run -->"
MAIN_JOB = "pip install -r requirements.txt && python train.py --demo"
TESTS = "pip install -r requirements.txt && python -m pytest -q tests"
MAX_README_LINES = 250
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(path, language):
    """The fenced code blocks of one language in a Markdown file, with whether the run marker precedes each."""
    text = path.read_text(encoding="utf-8")
    return [(match.group(2), text[:match.start()].rstrip().endswith(RUN_MARKER))
            for match in FENCE.finditer(text) if match.group(1) == language]


def _pages():
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_front_page_starting_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move details into docs/"
    first = FENCE.search(text)
    assert first.group(1) == "bash" and text[:first.start()].count("\n") < 12  # a title and one paragraph above
    commands = [line for line in first.group(2).splitlines() if line and not line.startswith("#")]
    assert commands == [MAIN_JOB, TESTS]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == TESTS, ".ci/run must run exactly the README's test command"


def test_the_site_builds_strictly(tmp_path):
    """mkdocs build --strict: a broken link or anchor, a page outside the nav, a docstring griffe cannot parse."""
    pytest.importorskip("mkdocs", reason="the docs extra (requirements.txt installs it) is missing")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    assert "estimate_defocus" in reference and "predict_sigma" in reference  # the docstrings were rendered
    assert "fonts.googleapis" not in (tmp_path / "site" / "index.html").read_text(encoding="utf-8")


def test_the_readme_example_runs_as_written(shared_data, tmp_path):
    code = "\n".join(block for block, marked in _blocks(README, "python") if marked)
    assert "dmenet.estimate_defocus" in code and "dmenet.load_predictor" in code
    assert code in (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), "docs/api.md shows the README's example"
    check = (
        "\nassert sigma.shape == photo.shape[:2] and sigma.dtype == np.float32 and np.isfinite(sigma).all()"
        "\nassert len(maps) == 2 and all(m.shape == photo.shape[:2] and 0 < m.min() for m in maps)"
        "\nassert abs(float(sample.labels.sigma.max()) - 7.0) < 1e-9"
    )
    env = {**os.environ, "DMENET_PARK17_WEIGHTS": str(shared_data / "park17" / "DHDE_model.caffemodel"),
           "KERAS_HOME": str(tmp_path / "keras"),  # an empty cache: the weights cannot come from one
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code + check], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout.splitlines()
    assert printed[0].startswith("(300, 451) float32 σ ") and printed[1] == "(300, 451, 3) σ_max 7.00 px"
    assert not list((tmp_path / "keras").rglob("*.caffemodel"))  # the variable was used, nothing downloaded


def test_python_blocks_name_only_what_dmenet_exports():
    """Every dmenet.NAME in a Python block exists, and its keywords exist where the signature is closed."""
    import inspect

    import dmenet

    for page in _pages():
        for block, _ in _blocks(page, "python"):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "dmenet":
                    assert node.attr in dmenet.__all__, f"{page.name}: dmenet.{node.attr} is not exported"
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "dmenet"):
                    parameters = inspect.signature(getattr(dmenet, node.func.attr)).parameters
                    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                        unknown = {k.arg for k in node.keywords} - set(parameters)
                        assert not unknown, f"{page.name}: dmenet.{node.func.attr} has no {unknown}"


class _Refused(Exception):
    """An argparse error or exit, raised instead of printing usage and leaving the process."""


def _refuse(*args):
    raise _Refused(*args)


class _Parser(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser_of(parse_args):
    """The ArgumentParser a CLI's parse_args builds, caught as it is about to parse."""
    def catch(parser, *args, **kwargs):
        raise _Parser(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", catch), pytest.raises(_Parser) as caught:
        parse_args([])
    return caught.value.parser


def _commands(block):
    """(script, arguments) of every `python SCRIPT ...` in a bash block, up to a shell operator or comment."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split, lexer.commenters = True, "#"
        tokens = list(lexer)
        for index, token in enumerate(tokens[:-1]):
            if token == "python" and not tokens[index + 1].startswith("-"):
                arguments = []
                for argument in tokens[index + 2:]:
                    if set(argument) <= set(";&|"):
                        break
                    arguments.append(argument)
                commands.append((tokens[index + 1], arguments))
    return commands


def test_every_documented_command_line_parses():
    from dmenet.cli import evaluate, infer, make_syndof, train

    parsers = {"infer.py": infer.parse_args, "train.py": train.parse_args, "evaluate.py": evaluate.parse_args,
               "data/make_syndof.py": make_syndof.parse_args}
    parsers = {script: _parser_of(parse_args) for script, parse_args in parsers.items()}
    checked = 0
    for page in _pages():
        for block, _ in _blocks(page, "bash"):
            for script, arguments in _commands(block):
                if script not in parsers:
                    continue
                parser = parsers[script]
                with mock.patch.object(parser, "error", side_effect=_refuse), mock.patch.object(parser, "exit", side_effect=_refuse):
                    try:
                        argparse.ArgumentParser.parse_args(parser, arguments)
                    except _Refused as refused:
                        pytest.fail(f"{page.relative_to(ROOT)}: `python {script} {shlex.join(arguments)}` does not parse: {refused}")
                checked += 1
    assert checked >= 30  # the README's and the pages' commands were found
