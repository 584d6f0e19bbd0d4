"""Exceptions of the data layer: every message names the file, row and column at fault."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED_ISSUES = 10


@dataclass(frozen=True)
class RowIssue:
    """One problem found in one row of one input file.

    ``row`` is the 1-based data row in the file as written (row 1 is the first row after
    the header, so a CSV row ``r`` sits on line ``r + 1``); ``None`` for file-level issues.
    """

    file: str
    row: int | None
    column: str | None
    problem: str
    csv_lines: bool = True  # the file is text with one header line: also quote the line number

    def describe(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.row + 1})" if self.csv_lines else ""))
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return ", ".join(where) + f": {self.problem}"

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column, "problem": self.problem}


class DataValidationError(ValueError):
    """Input bars that fail validation; ``issues`` lists every problem found."""

    def __init__(self, issues: list[RowIssue], hint: str = "") -> None:
        self.issues = list(issues)
        self.hint = hint
        shown = "\n  ".join(issue.describe() for issue in self.issues[:MAX_LISTED_ISSUES])
        more = len(self.issues) - MAX_LISTED_ISSUES
        tail = f"\n  ... and {more} more" if more > 0 else ""
        count = f"{len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}"
        message = f"invalid market data ({count}):\n  {shown}{tail}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)
