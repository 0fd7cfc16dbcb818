"""Reports from real runs: every section renders, partial runs render, HTML is self-contained and opens in
headless Chromium without errors, Markdown tables are well-formed GFM.

The runs are made by the real runner on small real work (scikit-learn's digits, resnet18 at 32 px), once
per test session.
"""

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from bench.cli import app
from bench.execution.sweep import run_cells
from bench.platform.device import cpu_precision_is_native
from bench.report import list_sections, render_report
from bench.report.data import load_runs
from bench.report.render import FIGURES_DIR, TEMPLATE_DIR, build_sections
from bench.store.run_store import RunStore
from bench.suite.expand import expand
from bench.suite.load import load_suite

FAST_SPEED = "  speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 0.0}\n"

TRAINED = (
    textwrap.dedent(
        """
    name: report-trained
    description: digits, two strategies, three precisions, one failing model
    models:
      - resnet18
      - {name: mobilenet_v2, kwargs: {no_such_argument: 1}}
    num_classes: 10
    matrix: {resolution: [32], batch_size: [32], precision: [fp32, bf16, fp16], strategy: [none, weighted_loss]}
    exclude:
      - {model: mobilenet_v2, precision: [bf16, fp16]}
      - {model: mobilenet_v2, strategy: weighted_loss}
      - {precision: fp16, strategy: weighted_loss}
    measure: [profile, speed, train]
    settings:
      train:
        data: {kind: digits, options: {imbalance: 10}, val_fraction: 0.3, hflip: false}
        epochs: 3
        lr: 0.001
        early_stopping: null
    """
    )
    + FAST_SPEED
)

PROFILE_ONLY = textwrap.dedent(
    """
    name: report-profile
    models: [efficientnet_b0, resnet18]
    matrix: {resolution: [native]}
    measure: [profile]
    """
)

ONE_MODEL = (
    textwrap.dedent(
        """
    name: report-one
    models: [resnet18]
    matrix: {resolution: [32], batch_size: [4]}
    measure: [profile, speed]
    settings:
    """
    )
    + FAST_SPEED
)


SWEEP = textwrap.dedent(
    """
    name: report-sweep
    description: a tiny CNN on digits, optimizer x batch size x epochs (an epoch sweep trains once)
    models: [{name: small_cnn, kwargs: {filters: 8, dense: 32}}]
    num_classes: 10
    matrix: {resolution: [12], batch_size: [16, 32], train.optimizer: [adam, sgd], train.epochs: [1, 2]}
    measure: [train]
    settings:
      train:
        data: {kind: digits, val_fraction: 0.3, subset: 0.5, hflip: false}
        lr: 0.01
        early_stopping: null
    """
)


def _run(tmp_path_factory, text: str, name: str) -> Path:
    folder = tmp_path_factory.mktemp(name)
    suite_path = folder / "suite.yaml"
    suite_path.write_text(text)
    suite = load_suite(suite_path)
    store = RunStore.create(folder / "results" / name / "run")
    store.write_json("suite.resolved.json", suite.resolved_dict())
    store.write_text("suite.yaml", text)
    run_cells(expand(suite), store, torch.device("cpu"), base_dir=suite.base_dir())
    return store.run_dir


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return _run(tmp_path_factory, TRAINED, "trained")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    return _run(tmp_path_factory, SWEEP, "sweep")


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory):
    return _run(tmp_path_factory, PROFILE_ONLY, "profile")


@pytest.fixture(scope="module")
def one_model_run(tmp_path_factory):
    return _run(tmp_path_factory, ONE_MODEL, "one")


@pytest.fixture(scope="module")
def slower_copy(one_model_run, tmp_path_factory):
    """The one-model run again, with its throughput halved and its latency doubled, as a second run."""
    copy = tmp_path_factory.mktemp("slower") / "results" / "report-one" / "run-2"
    shutil.copytree(one_model_run, copy)
    for path in (copy / "cells").glob("*.json"):
        data = json.loads(path.read_text())
        data["measurements"]["speed"]["throughput_img_s"] /= 2
        data["measurements"]["speed"]["latency_median_ms"] *= 2
        path.write_text(json.dumps(data))
    return copy


@pytest.fixture(scope="module")
def reports(trained_run, profile_run, one_model_run, slower_copy, sweep_run, tmp_path_factory):
    """name -> (sections rendered, html text, md text, out dir)."""
    out = {}
    for name, dirs in {
        "trained": [trained_run],
        "profile": [profile_run],
        "one": [one_model_run],
        "sweep": [sweep_run],
        "compare": [one_model_run, slower_copy],
    }.items():
        folder = tmp_path_factory.mktemp(f"report-{name}")
        paths = render_report(dirs, folder)
        sections, _ = build_sections(load_runs(dirs))
        out[name] = ([s["name"] for s in sections], paths["html"].read_text(), paths["md"].read_text(), folder)
    return out


# -- every registered section: templates exist, and some test report shows it -----------------------------


@pytest.mark.parametrize("section", [s.name for s in list_sections()])
def test_every_section_has_templates_and_is_rendered_somewhere(section, reports):
    for ext in ("html", "md"):
        assert (TEMPLATE_DIR / "sections" / f"{section}.{ext}.j2").is_file(), f"missing template for {section}"
    shown_in = [name for name, (sections, html, md, _) in reports.items() if section in sections]
    assert shown_in, f"no test report shows section '{section}': extend the fixtures so it is exercised"
    for name in shown_in:
        _, html, md, _ = reports[name]
        assert f'<section id="{section}">' in html


# the trained run's report: its sections in order, as built and as the browser finds them in the page
TRAINED_SECTIONS = [
    "header",
    "leaderboard",
    "pareto",
    "cost",
    "efficiency",
    "data_path",
    "flop_coverage",
    "mfu",
    "strategies",
    "precisions",
    "curves",
    "long_tail",
    "measured",
    "failures",
    "reproduce",
]


def test_trained_report_sections_and_numbers(reports, trained_run):
    sections, html, md, folder = reports["trained"]
    assert sections == TRAINED_SECTIONS
    # MFU: recorded per cell, against this CPU's measured peak, which the report says how it was measured
    mfu_part = md.split("## Model FLOP utilisation")[1].split("\n## ")[0]
    assert "FLOPs = 2 × MACs" in mfu_part and "MFU not available" not in mfu_part
    assert "measured: the best of" in mfu_part and "matmuls (torch.mm)" in mfu_part
    # the failing cell is listed with its reason
    assert "no_such_argument" in html and "no_such_argument" in md
    # the leaderboard shows each trained cell's macro-F1 as stored
    stored = [json.loads(p.read_text()) for p in (trained_run / "cells").glob("*.json")]
    for cell in stored:
        if cell["status"] == "ok":
            assert f"{cell['measurements']['train']['macro_f1']:.3f}" in md
    # Markdown figures exist beside the report
    for link in re.findall(r"\]\((report_files/[^)]+\.png)\)", md):
        assert (folder / link).is_file()
    assert "weighted_loss" in md and "Δ macro-F1 vs none" in md
    # emulated fp16 training on a CPU is skipped with its reason; its inference speed-up is still compared
    precision_part = md.split("## Precision comparison")[1].split("\n## ")[0]
    assert "| fp16 |" in precision_part and "×" in precision_part
    if not cpu_precision_is_native("fp16"):
        assert "emulated" in precision_part


def test_profile_only_run_renders(reports):
    sections, html, md, _ = reports["profile"]
    assert sections == ["header", "leaderboard", "efficientnet", "flop_coverage", "reproduce"]
    assert "efficientnet_b0" in md and "| 5.3 |" in md  # the paper's params beside ours


def test_one_model_run_renders(reports):
    sections, _, md, _ = reports["one"]
    assert sections == ["header", "leaderboard", "efficiency", "flop_coverage", "mfu", "measured", "reproduce"]
    assert "resnet18" in md


def test_two_runs_are_compared_by_cell_id(reports):
    sections, html, md, _ = reports["compare"]
    assert sections[:3] == ["header", "comparison", "leaderboard"]
    assert "(-50.0%)" in md  # throughput halved
    assert "(+100.0%)" in md  # latency doubled
    assert "1 cells matched by id" in md


def test_cli_report_and_bad_format(one_model_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(one_model_run), "--out", str(tmp_path), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.html").exists()
    bad = runner.invoke(app, ["report", str(one_model_run), "--format", "pdf"])
    assert bad.exit_code == 2 and "--format" in bad.output and "html, md" in bad.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


# -- self-contained HTML -------------------------------------------------------------------------------------

EXTERNAL = [
    re.compile(r"""(?:src|href|action|poster)\s*=\s*["']?(?!data:|#)[^"'\s>]""", re.I),
    re.compile(r"https?://", re.I),
    re.compile(r"url\(", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"//cdn", re.I),
]


def test_html_references_no_external_url(reports):
    for name, (_, html, _, _) in reports.items():
        for pattern in EXTERNAL:
            found = pattern.search(html)
            assert found is None, f"{name}: external reference {html[max(0, found.start() - 40) : found.end() + 40]!r}"


def test_external_url_check_can_fail():
    html = '<img src="https://example.org/x.png"><a href="#ok">'
    assert any(p.search(html) for p in EXTERNAL)


# -- headless Chromium ---------------------------------------------------------------------------------------


def test_report_in_headless_chromium(reports):
    from tests.browser import chromium_driver

    driver, reason = chromium_driver()
    if driver is None:
        pytest.skip(reason)
    _, _, _, folder = reports["trained"]
    try:
        driver.get((folder / "report.html").resolve().as_uri())
        ids = driver.execute_script("return Array.from(document.querySelectorAll('section')).map(s => s.id)")
        assert ids == TRAINED_SECTIONS  # the browser's DOM: the same sections, in the same order
        images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert images and all(done and width > 100 for done, width in images)
        # sorting: click the macro-F1 header twice, the table stays whole and the order flips
        rows = lambda: driver.execute_script(  # noqa: E731
            "return Array.from(document.querySelectorAll('#leaderboard-table tbody tr')).map(r => r.innerText)"
        )
        before = rows()
        header = next(
            th for th in driver.find_elements("css selector", "#leaderboard-table th") if th.text.startswith("macro-F1")
        )
        header.click()
        first = rows()
        header.click()
        second = rows()
        assert sorted(first) == sorted(before) and first == list(reversed(second)) and first != second
        f1_column = [float(r.split("\t")[-2].split(" ")[0]) for r in first]
        assert f1_column == sorted(f1_column)
        # at 1280 px every menu link is on screen (the menu wraps) and the page never scrolls sideways
        overflow = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth,"
            " Array.from(document.querySelectorAll('nav a')).filter(a => a.getBoundingClientRect().right > window.innerWidth).length]"
        )
        assert overflow[0] <= overflow[1] and overflow[2] == 0, overflow
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


# class names that are mathtext to matplotlib: `$\notacommand$` made it raise and lose the report's figures
DOLLAR_CLASSES = ["$\\alpha$_test", "$\\notacommand$_x", "plain"]


@pytest.fixture(scope="module")
def dollar_report(tmp_path_factory):
    """A small trained run on a CSV of three digits classes named DOLLAR_CLASSES, and its report: (html, md, out)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = tmp_path_factory.mktemp("dollar-data")
    digits = load_digits()
    rows = ["id,img_path,artist"]
    for digit, name in enumerate(DOLLAR_CLASSES):
        for k, i in enumerate([i for i, t in enumerate(digits.target) if t == digit][:40]):
            pixels = (digits.images[i] / 16 * 255).round().astype("uint8")
            Image.fromarray(pixels).convert("RGB").save(data / f"{digit}-{k}.png")
            rows.append(f"{digit}-{k},{digit}-{k}.png,{name}")
    (data / "data.csv").write_text("\n".join(rows) + "\n")
    suite = textwrap.dedent(
        f"""
        name: report-dollar
        models: [{{name: small_cnn, kwargs: {{filters: 8, dense: 32}}}}]
        matrix: {{resolution: [12], batch_size: [16]}}
        measure: [train]
        settings:
          train:
            data: {{kind: csv, options: {{csv: {data / "data.csv"}}}, val_fraction: 0.25, test_fraction: 0.25, hflip: false}}
            epochs: 2
            lr: 0.01
            early_stopping: null
        """
    )
    run_dir = _run(tmp_path_factory, suite, "dollar")
    out = tmp_path_factory.mktemp("report-dollar")
    paths = render_report([run_dir], out)
    return paths["html"].read_text(), paths["md"].read_text(), out


def test_class_named_alpha_test_renders_in_the_figures_and_in_chromium(dollar_report):
    """Issue 21: a class named `$\\alpha$_test` renders in the report's figures, as written, and the page works in
    Chromium; the Markdown report's figures are written whole (the atomic writer: no temporary file left)."""
    html, md, out = dollar_report
    assert '<section id="long_tail">' in html
    assert "$\\alpha$_test" in html and "$\\notacommand$_x" in html  # jinja's HTML escaping leaves $ and \ alone
    figures = sorted(p.name for p in (out / FIGURES_DIR).iterdir())
    assert {"long_tail.png", "confusion.png"} <= set(figures) and not [f for f in figures if "tmp" in f]
    for name in ("long_tail.png", "confusion.png"):
        assert (out / FIGURES_DIR / name).read_bytes().startswith(b"\x89PNG") and f"{FIGURES_DIR}/{name}" in md

    from tests.browser import chromium_driver

    driver, reason = chromium_driver()
    if driver is None:
        pytest.skip(reason)
    try:
        driver.get((out / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('#long_tail img')).map(i => [i.complete, i.naturalWidth])"
        )
        assert len(images) == 2 and all(done and width > 100 for done, width in images), images  # scatter, confusion
        driver.find_element("css selector", "#long_tail details summary").click()  # open the per-class table
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('#long_tail details tbody tr'))"
            ".map(r => r.querySelector('td').innerText)"
        )
        assert sorted(name.split(" (")[0] for name in shown) == sorted(DOLLAR_CLASSES), shown  # as written, visible
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


# -- GitHub-flavoured Markdown -------------------------------------------------------------------------------

_DELIMITER = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip())) - 2


def table_problems(md: str) -> list[str]:
    """Every block of lines starting with '|' must be a GFM table: a header, a delimiter row with as many
    columns, body rows with as many cells, and markdown-it (GFM tables) must parse it with every row."""
    problems = []
    blocks, current = [], []
    in_code = False
    for line in md.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    parser = MarkdownIt("commonmark").enable("table")
    for block in blocks:
        head = _cells(block[0])
        if len(block) < 2 or not _DELIMITER.match(block[1].strip()):
            problems.append(f"no delimiter row under {block[0]!r}")
            continue
        for line in block[1:]:
            if _cells(line) != head:
                problems.append(f"{_cells(line)} cells, header has {head}: {line!r}")
        tokens = parser.parse("\n".join(block) + "\n")
        rows = sum(t.type == "tr_open" for t in tokens)
        if rows != len(block) - 1:
            problems.append(f"markdown-it parsed {rows} rows of {len(block) - 1}: {block[0]!r}")
    return problems


def test_markdown_tables_are_well_formed(reports):
    for name, (_, _, md, _) in reports.items():
        assert md.count("\n|") > 3
        assert table_problems(md) == [], name


def test_table_check_can_fail():
    assert table_problems("| a | b |\n|---|---|\n| 1 |\n")
    assert table_problems("| a | b |\n| 1 | 2 |\n")


def test_sweep_report_plots_numeric_axes_and_compares_optimizers(reports, sweep_run):
    from bench.report.sections import ReportContext, optimizers, sweeps

    ctx = ReportContext(load_runs([sweep_run]))
    data = sweeps(ctx)
    axes = [(b["axis"], b["metric"]) for b in data["blocks"]]
    assert axes == [("batch_size", "macro-F1 (test)"), ("train.epochs", "macro-F1 (test)")]  # where it was measured
    epochs = data["blocks"][1]
    assert len(epochs["rows"]) == 4 and all(r["shared"] for r in epochs["rows"])  # one training per line
    assert {r["label"] for r in epochs["rows"]} == {
        "batch_size=16, optimizer=adam",
        "batch_size=16, optimizer=sgd",
        "batch_size=32, optimizer=adam",
        "batch_size=32, optimizer=sgd",
    }
    assert all([x for x, _ in r["points"]] == [1, 2] for r in epochs["rows"])
    opt = optimizers(ctx)
    assert len(opt["blocks"]) == 4 and all([r["value"] for r in b["rows"]] == ["adam", "sgd"] for b in opt["blocks"])
    # one seed per side and no multi-seed comparison in the run to pool seed noise from: no verdict but
    # "negligible" can be reached (training's own noise is unknown)
    assert all(b["rows"][1]["delta"]["verdict"] in ("inconclusive", "negligible") for b in opt["blocks"])
    assert all(b["rows"][1]["delta"]["seed_var_source"] == "none" for b in opt["blocks"])
    sections, html, md, folder = reports["sweep"]
    assert "sweeps" in sections and "optimizers" in sections
    assert (
        "against `train.epochs`" in md and (folder / "report_files" / "sweep_train_epochs_train_macro_f1.png").is_file()
    )


def test_precision_section_shows_each_format_range(reports):
    sections, html, md, _ = reports["trained"]
    assert "precisions" in sections
    assert "| fp16 (float16) | 16 | 5 / 10 | 6.55e+04 | 6.1e-05 | 0.000977 |" in md and "inference peak memory" in md
    assert "| bf16 (bfloat16) | 16 | 8 / 7 | 3.39e+38 | 1.18e-38 | 0.00781 |" in md
    assert "smallest normal" in html


def test_mfu_section_numbers_on_a_known_gpu(one_model_run, tmp_path):
    """A copy of a real run, as if measured on an A100: the section shows MFU = achieved / peak."""
    import shutil

    from bench.measure.mfu import cell_mfu
    from bench.report.sections import ReportContext, mfu

    run = tmp_path / "run"
    shutil.copytree(one_model_run, run)
    for path in (run / "cells").glob("*.json"):
        data = json.loads(path.read_text())
        m = data["measurements"]
        if data["status"] != "ok":
            continue
        m["profile"]["flops"], m["profile"]["flops_batch_size"] = 4e9, 1
        m["speed"]["throughput_img_s"] = 7800.0  # 4 GFLOP x 7800 img/s = 31.2 TFLOP/s
        for kind, d in cell_mfu(m, data["config"]["precision"], "NVIDIA A100-SXM4-80GB", tf32_allowed=True).items():
            target = m["speed" if kind == "inference" else "train"]
            target.update(
                mfu=d["utilisation"],
                mfu_reason=d["reason"],
                achieved_tflop_s=d["achieved_tflop_s"],
                peak_tflop_s=d["peak_tflop_s"],
                peak_precision=d["peak_precision"],
                peak_kind=d["peak_kind"],
                peak_source=d["peak_source"],
                mfu_device="NVIDIA A100-SXM4-80GB",
            )
        path.write_text(json.dumps(data))
    d = mfu(ReportContext(load_runs([run])))
    assert d["has_mfu"] and not d["reasons"]
    row = d["rows"][0]
    assert row["infer_tflop_s"] == pytest.approx(31.2)
    assert row["infer_mfu"] == pytest.approx(31.2 / 156)  # fp32 against the A100's dense TF32 peak
    assert d["peaks"] == ["NVIDIA A100-SXM4-80GB: 156 TFLOP/s dense tf32"]
