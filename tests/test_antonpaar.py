"""Anton Paar DMA 4100 M + Lovis 2000 ME: LIMS driver, LIMS-folder simulator, and both together
on a virtual clock."""

from __future__ import annotations

import ast
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from asab.config.loader import load_bench
from asab.config.models import Chemical, DensimeterSettings
from asab.drivers import antonpaar as driver_module
from asab.drivers.antonpaar import DMA4100LimsDriver, parse_export
from asab.drivers.base import DensityViscosityMeter
from asab.errors import DeviceError, RequestError, TransportTimeout
from simulators import physics
from simulators.antonpaar import DMA4100Simulator, load_params
from simulators.clock import VirtualClock
from simulators.liquid import Liquid

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "hardware_configs" / "hiu_2023"
STOCK = "1.5M-LiPF6-EC-EMC"
METHOD_T = 298.15

GOLDEN = (
    "Sample Name;Method;Date/Time;Results::Measurement Level;Results::Repetition;"
    "Results::Density;Results::Density Condition;Results::Density Temperature;"
    "Results::Lovis Dyn. Viscosity;Results::Lovis Condition;Results::Lovis Temperature;"
    "Results::Lovis Time FW;Results::Lovis Time BW\r\n"
    "S1;Density_Viscosity;2023-11-30 09:01:40;Repetition;1;1.28801;valid;25.001;3.4012;valid;25.000;26.512;26.530\r\n"
    "S1;Density_Viscosity;2023-11-30 09:03:20;Repetition;2;1.28797;Valid;25.000;3.3987;FW/BW dev. too high;25.001;26.4;27.9\r\n"
    "S1;Density_Viscosity;2023-11-30 09:05:00;Repetition;3;---;Filling error;24.999;---;Filling error;24.999;---;---\r\n"
    "S1;Density_Viscosity;2023-11-30 09:05:00;Master;;1.28799;valid;25.000;3.4012;valid;25.000;26.456;27.215\r\n"
)


# --------------------------------------------------------------------------- bench data
@pytest.fixture(scope="module")
def bench() -> tuple[dict[str, Chemical], Liquid]:
    """Chemicals and 1.5 mL of the 2023 stock 1.5M-LiPF6-EC-EMC (what a filled cell holds)."""
    config = load_bench(BENCH_DIR)
    chems = {c.inchikey: c for c in config.chemicals}
    stock = config.stock(STOCK)
    volume = 1.5
    scale = volume * stock.density / stock.total_mass
    moles = {k: m.mass * scale / chems[k].molar_mass for k, m in stock.components.items() if m.mass > 0}
    return chems, Liquid(moles=moles, volume=volume, mass=volume * stock.density)


# --------------------------------------------------------------------------- rig
class Rig:
    """Driver and simulator sharing two tmp folders and a virtual clock."""

    def __init__(self, tmp: Path, chems: dict[str, Chemical], content: Liquid, simulate: bool = True) -> None:
        self.clock = VirtualClock(max_step=0.5)
        self.content = content
        self.settings = DensimeterSettings(
            instrument="densiVisco", lims_input_dir=str(tmp / "in"), lims_output_dir=str(tmp / "out"),
        )
        (tmp / "in").mkdir(exist_ok=True)
        (tmp / "out").mkdir(exist_ok=True)
        self.sim = (
            DMA4100Simulator(lambda: self.content, chems, self.clock, tmp / "in", tmp / "out", seed=1)
            if simulate else None
        )
        self.driver = DMA4100LimsDriver(self.settings, self.clock)
        self.out = tmp / "out"
        self.inp = tmp / "in"


@pytest.fixture
def rig(tmp_path: Path, bench) -> Rig:
    chems, liquid = bench
    return Rig(tmp_path, chems, liquid.copy())


# --------------------------------------------------------------------------- parser
def test_golden_export_is_parsed() -> None:
    reps = parse_export("\ufeff" + GOLDEN, 3)
    assert [r.repetition for r in reps] == [1, 2, 3]
    first, second, third = reps
    assert first.density == 1.28801 and first.density_valid
    assert first.density_temperature == pytest.approx(298.151)
    assert first.viscosity == 3.4012 and first.viscosity_valid
    assert first.viscosity_temperature == pytest.approx(298.15)
    # a value with a condition other than valid is kept but invalid; "Valid" counts as valid
    assert second.density_valid and second.viscosity == 3.3987 and not second.viscosity_valid
    assert second.viscosity_condition == "FW/BW dev. too high"
    assert third.density is None and not third.density_valid and third.density_condition == "Filling error"


def test_units_row_and_unicode_dashes_are_tolerated() -> None:
    lines = GOLDEN.split("\r\n")
    units = ";;;;;g/cm³;;°C;mPa·s;;°C;s;s"
    text = "\r\n".join([lines[0], units, *lines[1:]]).replace("---", "\u2013\u2013\u2013")
    reps = parse_export(text, 3)
    assert reps[2].density is None and reps[1].viscosity == 3.3987


@pytest.mark.parametrize(
    "broken",
    [
        GOLDEN[:-2],                                   # last line end missing
        GOLDEN[: GOLDEN.rindex("S1;")],                # Master row missing
        GOLDEN.replace(";26.456;27.215\r\n", ";26.4\r\n"),  # short last row
        GOLDEN.replace("1.28797", "1.2879x"),          # bad number
        GOLDEN.replace("Results::Lovis Condition", "Lovis"),  # column missing
    ],
    ids=["no-final-line-end", "no-master-row", "short-last-row", "bad-number", "missing-column"],
)
def test_incomplete_or_malformed_exports_are_rejected(broken: str) -> None:
    with pytest.raises(ValueError):
        parse_export(broken, 3)


def test_wrong_repetition_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="repetition rows"):
        parse_export(GOLDEN, 4)


# --------------------------------------------------------------------------- simulator alone
def test_method_table_has_the_bench_method() -> None:
    method = load_params().methods["Density_Viscosity"]
    assert (method.temperature, method.repetitions) == (298.15, 3)
    assert 60 <= method.duration <= 900


def test_simulator_export_parsed_by_driver_parser(rig: Rig) -> None:
    (rig.inp / "S7.lims").write_text("#V100\n1;S7;;;;Density_Viscosity", encoding="utf-8")
    rig.clock.sleep(1.0)
    assert not (rig.inp / "S7.lims").exists(), "the job file is consumed"
    rig.clock.sleep(400.0)
    text = (rig.out / "S7_Density_Viscosity_Measurement.csv").read_text(encoding="utf-8")
    reps = parse_export(text, 3)
    assert all(r.density_valid and r.viscosity_valid for r in reps)
    assert not list(rig.out.glob("*.tmp"))


# --------------------------------------------------------------------------- driver + simulator
def test_driver_satisfies_the_protocol(rig: Rig) -> None:
    assert isinstance(rig.driver, DensityViscosityMeter)
    assert rig.driver.name == "densiVisco"


def test_measurement_matches_the_model(rig: Rig, bench) -> None:
    chems, liquid = bench
    rho_model = physics.density(liquid.moles, METHOD_T, chems)
    eta_model = physics.viscosity(liquid.moles, METHOD_T, chems)
    start = rig.clock.now()
    result = rig.driver.measure("Sample_001")
    assert 300.0 <= rig.clock.now() - start <= 305.0
    densities = [r.density for r in result.repetitions]
    assert len(densities) == 3 and all(r.density_valid for r in result.repetitions)
    assert statistics.fmean(densities) == pytest.approx(rho_model, abs=0.002)
    assert max(densities) - min(densities) < 6 * load_params().density_noise
    assert all(r.viscosity_valid and r.viscosity == pytest.approx(eta_model, rel=0.01) for r in result.repetitions)
    assert all(r.density_temperature == pytest.approx(METHOD_T, abs=0.01) for r in result.repetitions)
    assert result.raw_file.endswith("Sample_001_Density_Viscosity_Measurement.csv")
    assert result.raw_text == Path(result.raw_file).read_bytes().decode("utf-8")


def test_stock_density_is_close_to_its_measured_value(rig: Rig) -> None:
    """1.288 g/cm³ was measured at 299.8 K; at 298.15 K the stock is slightly denser."""
    result = rig.driver.measure("stock")
    assert 1.288 < statistics.fmean(r.density for r in result.repetitions) < 1.288 + 0.006


def test_forced_fw_bw_fault_invalidates_viscosity_only(rig: Rig) -> None:
    rig.sim.inject("fw_bw")
    result = rig.driver.measure("fwbw")
    for rep in result.repetitions:
        assert rep.density_valid and rep.density is not None
        assert not rep.viscosity_valid and rep.viscosity is None
        assert rep.viscosity_condition == "FW/BW dev. too high"


@pytest.mark.parametrize("gas, volume", [(0.5, 1.0), (0.0, 0.0)])
def test_gas_or_empty_cell_invalidates_density(rig: Rig, gas: float, volume: float) -> None:
    full = rig.content
    rig.content = full.take(volume) if volume else Liquid()
    rig.content.gas = gas
    result = rig.driver.measure("bubbly")
    for rep in result.repetitions:
        assert not rep.density_valid and rep.density is None and rep.density_condition == "Filling error"
        assert not rep.viscosity_valid


def test_cell_is_snapshotted_at_measurement_start(rig: Rig) -> None:
    def drain(now: float, dt: float) -> None:
        if now > 10.0:
            rig.content = Liquid()

    rig.clock.add_listener(drain)
    result = rig.driver.measure("snap")
    assert all(r.density_valid for r in result.repetitions)


def test_nothing_exported_times_out_in_virtual_time(rig: Rig) -> None:
    rig.sim.inject("no_export")
    start = rig.clock.now()
    with pytest.raises(TransportTimeout, match="densiVisco") as info:
        rig.driver.measure("lost", timeout=60.0)
    assert 60.0 <= rig.clock.now() - start <= 61.0
    assert info.value.device == "densiVisco"


def test_job_never_picked_up_is_withdrawn(tmp_path: Path, bench) -> None:
    rig = Rig(tmp_path, *bench, simulate=False)
    with pytest.raises(TransportTimeout, match="never picked up"):
        rig.driver.measure("orphan", timeout=5.0)
    assert not (rig.inp / "orphan.lims").exists()


def test_late_export_within_timeout_is_read(rig: Rig) -> None:
    rig.sim.inject("late_export", delay=200.0)
    start = rig.clock.now()
    result = rig.driver.measure("late", timeout=600.0)
    assert rig.clock.now() - start >= 500.0 and len(result.repetitions) == 3


def test_half_written_export_is_not_read_early(tmp_path: Path, bench) -> None:
    """The golden export appears in two steps 5 s apart, cut inside the last row's last number."""
    rig = Rig(tmp_path, *bench, simulate=False)
    target = rig.out / "S1_Density_Viscosity_Measurement.csv"
    cut = len(GOLDEN) - 4
    written: list[float] = []

    def instrument(now: float, dt: float) -> None:
        if not written and now >= 20.0:
            target.write_bytes(GOLDEN[:cut].encode())
            written.append(now)
        elif len(written) == 1 and now >= 25.0:
            with open(target, "ab") as fh:
                fh.write(GOLDEN[cut:].encode())
            written.append(now)

    rig.clock.add_listener(instrument)
    result = rig.driver.measure("S1", timeout=60.0)
    assert len(written) == 2
    assert rig.clock.now() >= written[1] + rig.driver.poll_interval, "size must be stable across two polls"
    assert result.raw_text == GOLDEN
    assert result.repetitions[0].density == 1.28801


def test_simulator_half_written_fault_is_survived(rig: Rig) -> None:
    rig.sim.inject("half_written")
    start = rig.clock.now()
    result = rig.driver.measure("halves")
    assert rig.clock.now() - start >= 300.0 + load_params().partial_write_gap
    assert result.raw_text.endswith("\r\n") and len(result.repetitions) == 3


def test_stale_export_is_ignored(rig: Rig) -> None:
    stale = rig.out / "again_Density_Viscosity_Measurement.csv"
    stale.write_text(GOLDEN, encoding="utf-8")
    result = rig.driver.measure("again")
    assert result.raw_text != GOLDEN and result.repetitions[0].viscosity_valid


def test_unknown_method_is_reported(tmp_path: Path, bench) -> None:
    rig = Rig(tmp_path, *bench)
    bad = DMA4100LimsDriver(rig.settings.model_copy(update={"method": "NoSuchMethod"}), rig.clock)
    with pytest.raises(DeviceError, match="NoSuchMethod") as info:
        bad.measure("x1", timeout=30.0)
    assert info.value.cause == "job rejected"


def test_check_job_round_trip(rig: Rig) -> None:
    result = rig.driver.check("water_check", "Water")
    assert result.raw_file.endswith("water_check_Density_Viscosity_Check.csv")
    assert "Check Type" in result.raw_text.splitlines()[0] and len(result.repetitions) == 3


@pytest.mark.parametrize("name", ["", "a b", "../x", "x;y", "é", "a" * 101, "x.lims"])
def test_bad_sample_names_are_rejected(rig: Rig, name: str) -> None:
    with pytest.raises(RequestError):
        rig.driver.measure(name)
    assert not list(rig.inp.iterdir())


def test_driver_does_not_import_simulators() -> None:
    tree = ast.parse(Path(driver_module.__file__).read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert imported and not [m for m in imported if m.split(".")[0] == "simulators"]


def test_driver_writes_the_documented_lims_job(tmp_path: Path, bench) -> None:
    rig = Rig(tmp_path, *bench, simulate=False)
    seen: list[str] = []
    grab: Callable[[float, float], None] = lambda now, dt: seen.extend(
        p.read_text(encoding="utf-8") for p in rig.inp.glob("*.lims") if not seen
    )
    rig.clock.add_listener(grab)
    with pytest.raises(TransportTimeout):
        rig.driver.measure("S9", timeout=2.0)
    assert seen == ["#V100\n1;S9;;;;Density_Viscosity"]


# --------------------------------------------------------------------------- #V200 checks, faults
def test_driver_writes_the_documented_check_job(tmp_path: Path, bench) -> None:
    rig = Rig(tmp_path, *bench, simulate=False)
    seen: list[str] = []
    rig.clock.add_listener(lambda now, dt: seen.extend(
        p.read_text(encoding="utf-8") for p in rig.inp.glob("*.lims") if not seen))
    with pytest.raises(TransportTimeout, match="Solvent_check_Density_Viscosity_Check.csv"):
        rig.driver.check("Solvent_check", "Solvent", timeout=2.0)
    assert seen == ["#V200\n1;Solvent_check;;;;Density_Viscosity;Type;C (Check);Check Type;Solvent"]


def test_water_check_measures_water_and_a_measurement_measures_the_sample(rig: Rig, bench) -> None:
    """#V200 and #V100 jobs go through the same instrument core: both export per-repetition rows."""
    check = rig.driver.check("water_check", "Water")
    sample = rig.driver.measure("after_check")
    assert check.raw_file.endswith("_Check.csv") and sample.raw_file.endswith("_Measurement.csv")
    header = check.raw_text.splitlines()[0].split(";")
    assert header[2] == "Check Type" and check.raw_text.splitlines()[1].split(";")[2] == "Water"
    assert len(check.repetitions) == len(sample.repetitions) == 3


def test_per_repetition_conditions_come_through(rig: Rig) -> None:
    rig.sim.inject("fw_bw", count=1)
    first, second, third = rig.driver.measure("one_bad").repetitions
    assert not first.viscosity_valid and first.viscosity_condition == "FW/BW dev. too high"
    assert first.density_valid and second.viscosity_valid and third.viscosity_valid


def test_lims_fault_api(rig: Rig) -> None:
    for kind in ("no_reply", "garbled", "busy", "heating"):
        with pytest.raises(ValueError, match="supported"):
            rig.sim.inject(kind)
    with pytest.raises(ValueError):
        rig.sim.inject("late_export", seconds=3)
    rig.sim.inject("invalid_method")
    with pytest.raises(DeviceError, match="invalid method") as info:
        rig.driver.measure("refused", timeout=30.0)
    assert info.value.device == "densiVisco" and info.value.cause == "job rejected"
    rig.sim.inject("no_export")
    rig.sim.clear_faults()
    assert len(rig.driver.measure("cleared").repetitions) == 3


def test_a_number_with_a_bad_condition_is_invalid_and_off_temperature_repetitions_too(tmp_path) -> None:
    """Validity comes from the condition column, not from the presence of a number; and the
    LIMS driver confirms the cell temperature of every repetition against the set point."""
    from asab.drivers.base import confirm_temperature

    text = GOLDEN.replace("1.28801;valid;25.001", "1.28801;Temperature not stable;25.001")
    first = parse_export(text, 3)[0]
    assert first.density == 1.28801 and not first.density_valid
    hot = parse_export(GOLDEN.replace("1.28801;valid;25.001", "1.28801;valid;25.300"), 3)[0]
    assert hot.density_valid  # the instrument says valid ...
    checked = confirm_temperature(hot, 298.15, 0.1, "densiVisco")
    assert not checked.density_valid and "not confirmed" in checked.density_condition
    assert confirm_temperature(parse_export(GOLDEN, 3)[0], 298.15, 0.1) .density_valid


def test_lims_driver_invalidates_repetitions_off_the_set_point(tmp_path: Path, bench) -> None:
    rig = Rig(tmp_path, *bench, simulate=False)
    target = rig.out / "S1_Density_Viscosity_Measurement.csv"
    text = GOLDEN.replace("1.28801;valid;25.001", "1.28801;valid;25.300")

    def instrument(now: float, dt: float) -> None:
        if now >= 20.0 and not target.exists():
            target.write_bytes(text.encode())

    rig.clock.add_listener(instrument)
    reps = rig.driver.measure("S1", timeout=60.0).repetitions
    assert not reps[0].density_valid and "set point 298.150 K" in reps[0].density_condition
    assert reps[1].density_valid  # 25.000 °C: within the 0.1 K tolerance
