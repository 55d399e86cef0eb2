"""The project's set-up files agree with each other."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pins_exactly_the_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    [pip_section] = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert {line for line in pip_section if not line.startswith("--")} == declared
    assert all("==" in requirement for requirement in declared)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python -m pytest --nbval-lax tests/ notebooks/"
    assert test_command in readme and test_command in ci
