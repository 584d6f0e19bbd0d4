"""The one report.md / report.html writer: every report (the single-symbol backtest,
:mod:`fastrl.reports.single`; the portfolio backtest, :mod:`fastrl.reports.portfolio`; the
tuning study, :mod:`fastrl.tune.report_study`; PBT, :mod:`fastrl.tune.report_pbt`; the
walk-forward run, :mod:`fastrl.walkforward.report`) describes its content as a
:class:`Document` of :class:`Section` s and :class:`Table` s, and this module renders it
twice: Markdown with linked PNGs, and one self-contained HTML page with the PNGs embedded
(one file to mail around). Neither output depends on which report fed it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;"
         "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}"
         "th,td{border:1px solid #ccc;padding:4px 10px}td.num{text-align:right;"
         "font-variant-numeric:tabular-nums}th{background:#f3f3f3}img{max-width:100%}")


@dataclass
class Table:
    """A header and rows of cells (already formatted). ``numeric``: every column after the
    first holds numbers (right-aligned)."""

    header: list[str]
    rows: list[list[str]]
    numeric: bool = True


@dataclass
class Section:
    """A heading, then in this order: paragraphs, bullets, a table, closing paragraphs."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: Table | None = None
    closing: list[str] = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    """A whole report: title, an optional verdict (bold, first), paragraphs and bullets
    under the title, the sections, then the plots (PNG files) and notes about them."""

    title: str
    verdict: str | None = None
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)
    image_notes: list[str] = field(default_factory=list)

    def all_sections(self) -> list[Section]:
        """The sections, then "Plots" when there are images or notes about them."""
        if not (self.images or self.image_notes):
            return list(self.sections)
        return [*self.sections, Section("Plots", bullets=list(self.image_notes))]


def _markdown_table(table: Table) -> list[str]:
    align = ["---"] + ["---:" if table.numeric else "---"] * (len(table.header) - 1)
    return ["| " + " | ".join(table.header) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(row) + " |" for row in table.rows)]


def markdown(doc: Document) -> str:
    """report.md: the document with its PNGs linked by file name (they sit beside it)."""
    out = [f"# {doc.title}", ""]
    if doc.verdict is not None:
        out += [f"**Verdict: {doc.verdict}.**", ""]
    for paragraph in doc.paragraphs:
        out += [paragraph, ""]
    if doc.bullets:
        out += [*(f"- {line}" for line in doc.bullets), ""]
    plots = len(doc.sections)  # the index of the "Plots" section, where there is one
    for index, section in enumerate(doc.all_sections()):
        out += [f"{'#' * section.level} {section.heading}", ""]
        for paragraph in section.paragraphs:
            out += [paragraph, ""]
        if index == plots:
            for name, image in doc.images.items():
                out += [f"### {name}", "", f"![{name}]({image.name})", ""]
        if section.bullets:
            out += [*(f"- {line}" for line in section.bullets), ""]
        if section.table is not None:
            out += [*_markdown_table(section.table), ""]
        for paragraph in section.closing:
            out += [paragraph, ""]
    return "\n".join(out)


def html_page(doc: Document) -> str:
    """report.html: the same content with the PNGs embedded."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(doc.title)}</title>", f"<style>{STYLE}</style>", "</head><body>",
             f"<h1>{esc(doc.title)}</h1>"]
    if doc.verdict is not None:
        parts.append(f'<p class="verdict"><strong>Verdict: {esc(doc.verdict)}.</strong></p>')

    def bullets(lines: list[str]) -> None:
        if lines:
            parts.extend(["<ul>", *(f"<li>{esc(line)}</li>" for line in lines), "</ul>"])

    parts += [f"<p>{esc(paragraph)}</p>" for paragraph in doc.paragraphs]
    bullets(doc.bullets)
    plots = len(doc.sections)  # the index of the "Plots" section, where there is one
    for index, section in enumerate(doc.all_sections()):
        parts.append(f"<h{section.level}>{esc(section.heading)}</h{section.level}>")
        parts += [f"<p>{esc(paragraph)}</p>" for paragraph in section.paragraphs]
        if index == plots:
            for name, image in doc.images.items():
                encoded = base64.b64encode(image.read_bytes()).decode("ascii")
                parts.append(f"<h3>{esc(name)}</h3>")
                parts.append(f'<img alt="{esc(name)}" src="data:image/png;base64,{encoded}">')
        bullets(section.bullets)
        if section.table is not None:
            table = section.table
            cell = '<td class="num">' if table.numeric else "<td>"
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr>")
            for row in table.rows:
                cells = "".join(f"{cell}{esc(value)}</td>" for value in row[1:])
                parts.append(f"<tr><td>{esc(row[0])}</td>{cells}</tr>")
            parts.append("</table>")
        parts += [f"<p>{esc(paragraph)}</p>" for paragraph in section.closing]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_pages(doc: Document, folder: Path) -> tuple[Path, Path]:
    """Writes report.md and report.html into ``folder``; returns their paths."""
    markdown_path = folder / "report.md"
    markdown_path.write_text(markdown(doc), encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(html_page(doc), encoding="utf-8")
    return markdown_path, html_path


__all__ = ["Document", "Section", "Table", "html_page", "markdown", "write_pages"]
