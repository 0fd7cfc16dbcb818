"""Energy: RAPL deltas and wrap-around on a fake powercap tree, NVML's counter and power on a fake NVML (the
library boundary), the idle baseline, J/image, and the reason when nothing is readable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.measure.catalogue import ENERGY_PER_IMAGE, IMAGES_PER_JOULE
from bench.measure.energy import co2_grams_per_million_images, cost_per_million_images, measure_energy
from bench.platform.energy import RAPL_ROOT, EnergyMeter, counter_delta, nvml_sources, rapl_sources


def rapl_tree(root: Path, *, package_uj: int = 1_000_000, dram_uj: int = 50_000, max_uj: int = 262_143_328_850):
    """A powercap tree as the intel_rapl driver lays it out: a package zone, its core and dram subzones, psys."""
    zones = {
        "intel-rapl:0": ("package-0", package_uj),
        "intel-rapl:0/intel-rapl:0:0": ("core", 10),
        "intel-rapl:0/intel-rapl:0:1": ("dram", dram_uj),
        "intel-rapl:1": ("psys", 99),
    }
    for rel, (name, energy) in zones.items():
        zone = root / rel
        zone.mkdir(parents=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    # the driver's class folder links every zone at the top level
    for sub in ("intel-rapl:0:0", "intel-rapl:0:1"):
        (root / sub).symlink_to(root / "intel-rapl:0" / sub)
    return root


def set_uj(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_counter_delta_handles_one_wrap():
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 150  # 100 to the top, 50 after the wrap
    with pytest.raises(ValueError, match="range is unknown"):
        counter_delta(900, 50, None)


def test_rapl_package_and_dram_deltas_not_core_or_psys(tmp_path):
    root = rapl_tree(tmp_path / "powercap")
    meter = EnergyMeter("cpu", rapl_root=root)
    assert sorted(s.name for s in meter.sources) == ["cpu_package0", "dram0"]
    start = meter.read()
    set_uj(root, "intel-rapl:0", 1_000_000 + 7_500_000)  # +7.5 J
    set_uj(root, "intel-rapl:0:1", 50_000 + 500_000)  # +0.5 J
    set_uj(root, "intel-rapl:0:0", 10 + 10**9)  # core: part of the package, never added
    joules = meter.joules(start, meter.read())
    assert joules == pytest.approx({"cpu_package0": 7.5, "dram0": 0.5})


def test_rapl_wrap_around_uses_max_energy_range(tmp_path):
    root = rapl_tree(tmp_path / "powercap", package_uj=999_000_000, max_uj=1_000_000_000)
    meter = EnergyMeter("cpu", rapl_root=root)
    start = meter.read()
    set_uj(root, "intel-rapl:0", 2_000_000)  # wrapped: 1 J to the top, 2 J after
    assert meter.joules(start, meter.read())["cpu_package0"] == pytest.approx(3.0)


def test_no_powercap_says_why(tmp_path):
    meter = EnergyMeter("cpu", rapl_root=tmp_path / "absent")
    assert meter.sources == []
    assert "does not exist: no powercap (RAPL) driver" in meter.reason
    out = measure_energy(lambda: 8, meter, idle_s=0.01, min_time_s=0.01)
    assert out[ENERGY_PER_IMAGE.key] is None and out[IMAGES_PER_JOULE.key] is None
    assert out["energy"]["unavailable"] == meter.reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_root_only_energy_uj_says_so(tmp_path):
    root = rapl_tree(tmp_path / "powercap")
    for path in root.rglob("energy_uj"):
        path.chmod(0o000)
    sources, reason = rapl_sources(root)
    assert sources == [] and "readable only by root" in reason and "chmod" in reason


def test_unreadable_counter_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    root = rapl_tree(tmp_path / "powercap")
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    sources, reason = rapl_sources(root)
    assert sources == []
    assert "readable only by root" in reason and "intel-rapl:0/energy_uj" in reason


def test_this_machine_gives_energy_or_says_why():
    meter = EnergyMeter("cpu")
    try:
        if meter.sources:
            assert meter.reason is None
            assert all(isinstance(v, float) for v in meter.read().values())
        else:
            assert meter.reason and str(RAPL_ROOT) in meter.reason
    finally:
        meter.close()


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """The part of pynvml bench calls: a counter in mJ that the test advances, and a power reading in mW."""

    NVMLError = FakeNVMLError

    def __init__(self, *, counter: bool = True, power_mw: float = 250_000.0):
        self.counter, self.power_mw = counter, power_mw
        self.energy_mj = 5_000_000
        self.inited = self.shut = 0

    def nvmlInit(self):
        self.inited += 1

    def nvmlShutdown(self):
        self.shut += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise FakeNVMLError("Invalid Argument")
        return ("gpu", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise FakeNVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw


def test_nvml_total_energy_counter_deltas(tmp_path):
    nvml = FakeNVML()
    meter = EnergyMeter("cuda", 0, rapl_root=tmp_path / "absent", nvml=nvml)
    assert [s.name for s in meter.sources] == ["gpu"] and not meter.estimate
    assert meter.reasons and meter.reasons[0].startswith("CPU:")  # the host's RAPL: why it is missing
    start = meter.read()
    nvml.energy_mj += 12_345  # 12.345 J
    assert meter.joules(start, meter.read()) == pytest.approx({"gpu": 12.345})
    meter.close()
    assert nvml.shut == 1


def test_nvml_power_only_is_an_estimate():
    nvml = FakeNVML(counter=False, power_mw=100_000.0)  # 100 W, no counter (boards before Volta)
    sources, reason = nvml_sources(0, nvml)
    assert reason is None and sources[0].estimate
    try:
        a = sources[0].read()
        import time

        time.sleep(0.2)
        joules = sources[0].delta_j(a, sources[0].read())
        assert joules == pytest.approx(20.0, rel=0.25)  # 100 W x 0.2 s
    finally:
        sources[0].close()


def test_no_gpu_in_nvml_says_why(tmp_path):
    sources, reason = nvml_sources(3, FakeNVML())
    assert sources == [] and "no GPU 3" in reason


def test_idle_baseline_subtracted_and_joules_per_image(tmp_path):
    """Idle: 10 W on the package; loaded: the counter advances 2 J per batch of 8 over 1 s (a fake clock)."""
    root = rapl_tree(tmp_path / "powercap")
    meter = EnergyMeter("cpu", rapl_root=root)
    now = [0.0]
    uj = [1_000_000]

    def advance(seconds: float, joules: float) -> None:
        now[0] += seconds
        uj[0] += int(joules * 1e6)
        set_uj(root, "intel-rapl:0", uj[0])

    def step() -> int:  # one batch: 0.1 s, 10 W idle + 10 J of work
        advance(0.1, 0.1 * 10 + 10)
        return 8

    out = measure_energy(
        step,
        meter,
        idle_s=2.0,
        min_time_s=1.0,
        sleep=lambda s: advance(s, 10 * s),
        clock=lambda: now[0],
        busy=lambda: (100, 1000),
    )
    detail = out["energy"]
    assert detail["idle_w"]["cpu_package0"] == pytest.approx(10.0)
    assert detail["images"] == 80 and detail["window_s"] == pytest.approx(1.0)
    assert detail["gross_j"]["cpu_package0"] == pytest.approx(110.0)
    assert detail["net_j"]["cpu_package0"] == pytest.approx(100.0)
    assert out[ENERGY_PER_IMAGE.key] == pytest.approx(100.0 / 80)
    assert out[IMAGES_PER_JOULE.key] == pytest.approx(0.8)
    assert detail["unavailable"] is None and not detail["estimate"]
    assert any("whole CPU package" in n for n in detail["notes"])


def test_training_energy_adds_the_epochs_steps_across_a_wrap_net_of_idle(tmp_path):
    """Idle 10 W for 1 s; two epochs of 0.5 s, each 10 W idle + 20 J of work over 64 images; the counter wraps in
    the second. Validation between the epochs draws 100 J that must not count."""
    from bench.measure.energy import TrainingEnergy

    max_uj = 30_000_000
    root = rapl_tree(tmp_path / "powercap", package_uj=1_000_000, max_uj=max_uj)
    now, uj = [0.0], [1_000_000]

    def advance(seconds: float, joules: float) -> None:
        now[0] += seconds
        uj[0] = (uj[0] + int(joules * 1e6)) % max_uj
        set_uj(root, "intel-rapl:0", uj[0])

    energy = TrainingEnergy(
        EnergyMeter("cpu", rapl_root=root),
        1.0,
        sleep=lambda s: advance(s, 10 * s),
        clock=lambda: now[0],
        busy=lambda: (0, 1000),
    )
    wrapped = []
    for _ in range(2):
        energy.begin()
        start = uj[0]
        advance(0.5, 5 + 20)
        wrapped.append(uj[0] < start)
        energy.end(64)
        advance(3.0, 100)  # the validation pass: outside the training steps
    out = energy.record()
    detail = out["energy"]
    assert detail["gross_j"]["cpu_package0"] == pytest.approx(50.0)
    assert detail["net_j"]["cpu_package0"] == pytest.approx(40.0)
    assert detail["images"] == 128 and detail["window_s"] == pytest.approx(1.0)
    assert out[ENERGY_PER_IMAGE.key] == pytest.approx(40.0 / 128)
    assert wrapped == [True, True]  # each epoch's counter went past max_energy_range_uj
    # nothing readable: the reason, no figure
    none = TrainingEnergy(EnergyMeter("cpu", rapl_root=tmp_path / "absent"), 1.0).record()
    assert none[ENERGY_PER_IMAGE.key] is None and "does not exist" in none["energy"]["unavailable"]


def test_shared_machine_flagged_and_no_net_energy_is_a_reason(tmp_path):
    root = rapl_tree(tmp_path / "powercap")
    meter = EnergyMeter("cpu", rapl_root=root)
    ticks = iter([(0, 1000), (300, 2000)])  # others kept 30% of the CPUs busy while the cell slept
    out = measure_energy(lambda: 8, meter, idle_s=0.01, min_time_s=0.01, busy=lambda: next(ticks))
    detail = out["energy"]
    assert detail["shared_machine"] and detail["others_cpu_busy_share"] == pytest.approx(0.3)
    assert any(n.startswith("shared machine") for n in detail["notes"])
    # the fake counter never moved: nothing above idle, so no J/image and the reason says what to do
    assert out[ENERGY_PER_IMAGE.key] is None and "energy_min_time_s" in detail["unavailable"]


def test_cost_and_co2_per_million_images():
    assert cost_per_million_images(100.0, 3.6) == pytest.approx(10.0)  # 10,000 s at $0.001/s
    assert cost_per_million_images(None, 3.6) is None and cost_per_million_images(100.0, None) is None
    # 3.6 J/image x 1e6 = 1 kWh, at 400 g/kWh
    assert co2_grams_per_million_images(3.6, 400) == pytest.approx(400.0)
    assert co2_grams_per_million_images(None, 400) is None


# -- a real cell, and the report's efficiency section ---------------------------------------------------------

TINY = """
name: energy-tiny
models: [{name: small_cnn, kwargs: {filters: 8, dense: 32}}]
num_classes: 10
matrix: {resolution: [16], batch_size: [8]}
measure: [speed]
settings:
  speed: {warmup_iters: 1, min_repeats: 3, min_time_s: 0.0, energy_idle_s: 0.05, energy_min_time_s: 0.05}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import torch

    from bench.execution.sweep import run_cells
    from bench.store.run_store import RunStore
    from bench.suite.expand import expand
    from bench.suite.load import load_suite

    folder = tmp_path_factory.mktemp("energy")
    (folder / "suite.yaml").write_text(TINY)
    suite = load_suite(folder / "suite.yaml")
    store = RunStore.create(folder / "results" / "energy-tiny" / "run")
    store.write_json("suite.resolved.json", suite.resolved_dict())
    run_cells(expand(suite), store, torch.device("cpu"), base_dir=suite.base_dir())
    return store.run_dir


def _speed(run_dir: Path) -> dict:
    import json

    (cell,) = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert cell["status"] == "ok", cell.get("reason")
    return cell["measurements"]["speed"]


def test_a_speed_cell_on_this_machine_gives_energy_or_why(tiny_run):
    speed = _speed(tiny_run)
    if EnergyMeter("cpu").sources:
        assert speed[ENERGY_PER_IMAGE.key] > 0 and speed["energy"]["images"] >= 8
    else:
        assert speed[ENERGY_PER_IMAGE.key] is None
        assert str(RAPL_ROOT) in speed["energy"]["unavailable"]


def test_efficiency_section_costs_from_time_and_energy_from_the_record(tiny_run, tmp_path):
    import json
    import shutil

    from bench.core.numbers import format_number
    from bench.report import render_report

    # this machine's record as it is: cost from time x price, energy's reason
    resolved = json.loads((tiny_run / "suite.resolved.json").read_text())
    resolved["costs"] = {"price_per_hour": 3.6, "currency": "EUR", "grid_gco2_per_kwh": 400.0}
    priced = tmp_path / "results" / "energy-tiny" / "priced"
    shutil.copytree(tiny_run, priced)
    (priced / "suite.resolved.json").write_text(json.dumps(resolved))
    md = render_report([priced], tmp_path / "r1")["md"].read_text()
    part = md.split("## Efficiency")[1].split("\n## ")[0]
    speed = _speed(priced)
    cost = 3.6 / 3600 / speed["throughput_img_s"] * 1e6
    assert "EUR / 1M images" in part and f"| {format_number(cost)} |" in part
    if speed[ENERGY_PER_IMAGE.key] is None:
        assert "Energy unavailable: " in part and "J/image" not in part.split("|", 1)[1]
    # a record with energy (as RAPL gives it): J/image, img/J and CO2 = J/image x 1e6 / 3.6e6 x 400 g
    (path,) = (priced / "cells").glob("*.json")
    cell = json.loads(path.read_text())
    cell["measurements"]["speed"].update(
        {ENERGY_PER_IMAGE.key: 0.09, IMAGES_PER_JOULE.key: 1 / 0.09, "energy": {"unavailable": None, "notes": []}}
    )
    path.write_text(json.dumps(cell))
    html = render_report([priced], tmp_path / "r2")["html"].read_text()
    md = (tmp_path / "r2" / "report.md").read_text()
    part = md.split("## Efficiency")[1].split("\n## ")[0]
    assert "| J/image | img/J |" in part and "0.09" in part and "| 10.0 |" in part  # 0.09 J x 1e6 / 3.6e6 x 400 g
    assert '<section id="efficiency">' in html and "Energy unavailable" not in part


def test_gpu_memory_used_from_nvml_or_why_not():
    from types import SimpleNamespace

    from bench.platform.gpu_memory import nvml_used_mb

    nvml = FakeNVML()
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: SimpleNamespace(used=3 * 2**30, total=80 * 2**30)
    assert nvml_used_mb(0, nvml) == (3072.0, None) and nvml.shut == 1
    used, why = nvml_used_mb(2, nvml)
    assert used is None and "GPU 2" in why


def test_a_cpu_speed_record_has_no_gpu_memory_fields(tiny_run):
    from bench.measure.catalogue import DEVICE_USED, PEAK_RESERVED

    speed = _speed(tiny_run)
    assert PEAK_RESERVED.key not in speed and DEVICE_USED.key not in speed
