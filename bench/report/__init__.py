"""Comparison reports from the results store: sections (a registry), figures, HTML and Markdown."""

from bench.report.data import RunData, load_run, load_runs
from bench.report.render import FORMATS, render_report
from bench.report.sections import list_sections, register_section

__all__ = ["FORMATS", "RunData", "list_sections", "load_run", "load_runs", "register_section", "render_report"]
