"""The code meets the project's ruff configuration (pyproject.toml: lint rules, import order, line length)."""
import pathlib
import subprocess
import sys

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(REPOSITORY)],
                         capture_output=True, text=True, timeout=300, cwd=REPOSITORY)
    assert run.returncode == 0, run.stdout + run.stderr
