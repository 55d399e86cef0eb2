"""The errors a user sees as one sentence (the command line prints them without a traceback)."""

from __future__ import annotations

from pathlib import Path


class ClinflairError(Exception):
    """Base of the errors that carry a complete message for the user."""


class DataError(ClinflairError, RuntimeError):
    """A data file is missing, unreachable or not what the registry says it is."""


class ConllFormatError(ClinflairError, ValueError):
    """A CoNLL file breaks the format; ``str()`` names the file, the line and the problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
