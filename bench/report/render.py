"""Render a report (HTML and/or Markdown) from run directories, with the Jinja2 templates in
`report_templates/`.

HTML is one self-contained file: CSS inlined, figures inlined as base64 PNG, no external URL, readable
without JavaScript (a few lines sort the tables on a click). Markdown is GitHub-flavoured, with the
figures as PNG files in `report_files/` beside it, so it renders on GitHub and in a CI job summary.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

import jinja2

from bench.core.errors import InputError
from bench.core.files import atomic_write, atomic_write_text
from bench.core.numbers import format_number
from bench.core.resources import shipped_dir
from bench.core.result import refuse_mixed_evaluation
from bench.report.data import RunData, load_runs
from bench.report.sections import ReportContext, list_sections

FORMATS = ("html", "md")
FIGURES_DIR = "report_files"
TEMPLATE_DIR = shipped_dir("report_templates")


def _md_cell(value) -> str:
    """A value made safe for a GFM table cell: one line, pipes escaped."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _pct(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}%"


def _share(value, digits: int = 2) -> str:
    """A fraction as an unsigned percentage: 0.0123 -> 1.23%."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


def _signed(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}"


def _stat(stat, digits: int = 3) -> str:
    """mean ± 95% CI half-width (n) when there are several seeds, else the value."""
    if stat is None:
        return "—"
    if stat.half is None:
        return format_number(stat.mean, digits)
    return f"{format_number(stat.mean, digits)} ± {format_number(stat.half, 2)} (n={stat.n})"


def _sci(value, digits: int = 3) -> str:
    """Scientific-style short form for values spanning many magnitudes (3.4e+38, 6.1e-05)."""
    if value is None:
        return "—"
    return f"{value:.{digits}g}"


def environment(fmt: str, figures: dict) -> jinja2.Environment:
    if not TEMPLATE_DIR.is_dir():
        raise InputError(
            "report templates not found",
            file=TEMPLATE_DIR,
            hint="install bench from its source tree (pip install -e .)",
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=format_number, pct=_pct, share=_share, signed=_signed, stat=_stat, mdcell=_md_cell, sci=_sci)

    def figure(name: str) -> str:
        fig = figures[name]
        if fmt == "html":
            data = base64.b64encode(fig.png).decode("ascii")
            return jinja2.utils.markupsafe.Markup(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(fig.alt)}">'
                f"<figcaption>{html.escape(fig.alt)}</figcaption></figure>"
            )
        return f"![{_md_cell(fig.alt).replace('[', '(').replace(']', ')')}]({FIGURES_DIR}/{name}.png)"

    env.globals["figure"] = figure
    env.globals["css"] = lambda: jinja2.utils.markupsafe.Markup(
        (TEMPLATE_DIR / "report.css").read_text(encoding="utf-8")
    )
    env.globals["sortjs"] = lambda: jinja2.utils.markupsafe.Markup(
        (TEMPLATE_DIR / "sort.js").read_text(encoding="utf-8")
    )
    return env


def build_sections(runs: list[RunData]) -> tuple[list[dict], ReportContext]:
    """Each registered section's data (sections without data left out), in order."""
    ctx = ReportContext(runs)
    out = []
    for section in list_sections():
        data = section.build(ctx)
        if data is not None:
            out.append({"name": section.name, "title": section.title, "data": data})
    return out, ctx


def render_report(
    run_dirs: Iterable[str | Path], out_dir: str | Path | None = None, formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Write report.html and/or report.md (with report_files/) into `out_dir` (default: the last run
    directory). Returns the written paths by format."""
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(
            f"unknown report format {', '.join(repr(b) for b in bad) or '(none)'}",
            field="--format",
            hint=f"choose from {', '.join(FORMATS)} (comma-separated)",
        )
    runs = load_runs(list(run_dirs))
    refuse_mixed_evaluation([(r.label, r.results) for r in runs])
    out = Path(out_dir) if out_dir else runs[-1].run_dir
    sections, ctx = build_sections(runs)
    written: dict[str, Path] = {}
    title = f"bench report — {runs[-1].name}"
    for fmt in formats:
        env = environment(fmt, ctx.figures)
        template = env.get_template("report.html.j2" if fmt == "html" else "report.md.j2")
        text = template.render(title=title, sections=sections)
        path = out / f"report.{fmt}"
        if fmt == "md":
            for fig in ctx.figures.values():
                png = fig.png
                atomic_write(out / FIGURES_DIR / f"{fig.name}.png", lambda fh: fh.write(png), binary=True)
        atomic_write_text(path, text)
        written[fmt] = path
    return written
