"""The project's set-up files agree with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_every_dependency_is_pinned_once_and_environment_yml_pins_the_same() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert all("==" in pin for pin in pins) and len({_name(p) for p in pins}) == len(pins)
    assert {_name(r) for r in declared} == {_name(p) for p in pins}, "a dependency without a pin, or a stray pin"
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    [pip_section] = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert {line for line in pip_section if not line.startswith("--")} == set(pins)


def test_runtime_dependencies_are_ranges_that_leave_colabs_torch_alone() -> None:
    """A chapter launched on Colab installs the runtime dependencies only: no exact pins there, and
    nothing that only the book build needs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"]
    assert not any("==" in requirement for requirement in runtime)
    assert not {_name(r) for r in runtime} & {"papermill", "jupyter-book", "nbval", "ipykernel", "pytest"}


def test_setup_commands_use_the_pins() -> None:
    command = '-e ".[book,test]" -c constraints.txt'
    assert command in (ROOT / "README.md").read_text() and command in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python -m pytest --nbval-lax tests/ notebooks/"
    assert test_command in readme and test_command in ci
