"""The `bench` command line (Typer + rich): the command groups, each command a function in a module of its own.

Bad input prints one short error per problem (file:line: field: message — hint) and exits with code 2,
with no Python traceback unless `--debug` is given. `bench run` exits 1 when any cell failed.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from bench.cli import export, fastpaths, gate, listing, parity, plan, results, run
from bench.cli.console import STATE, err_console
from bench.core.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark and compare image-classification models.")
list_app = typer.Typer(no_args_is_help=True, help="List registered models or available suites.")
app.add_typer(list_app, name="list")
baseline_app = typer.Typer(
    no_args_is_help=True, help="Save runs as baselines (results/baselines/NAME, meant to be committed)."
)
app.add_typer(baseline_app, name="baseline")
export_app = typer.Typer(no_args_is_help=True, help="Export a run to MLflow or to github-action-benchmark's JSON.")
app.add_typer(export_app, name="export")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors.")) -> None:
    STATE["debug"] = debug


app.command()(run.run)
app.command()(plan.plan)
app.command()(results.report)
app.command()(results.show)
app.command()(gate.compare)
app.command("gate")(gate.gate)
app.command("cpu-fastpaths")(fastpaths.cpu_fastpaths)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, help=parity.PARITY_HELP)(
    parity.parity
)
list_app.command("models")(listing.list_models_cmd)
list_app.command("suites")(listing.list_suites_cmd)
baseline_app.command("save")(gate.baseline_save)
export_app.command("mlflow")(export.mlflow_cmd)
export_app.command("github-benchmark")(export.github_benchmark_cmd)


def main() -> None:
    """Console-script entry point: input errors -> exit 2 without traceback."""
    try:
        app()
    except BenchError as exc:  # raised outside a command's own handling: input errors exit 2, others 1
        if "--debug" in sys.argv:
            raise
        for line in str(exc).splitlines():
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
