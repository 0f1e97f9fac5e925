"""check_request: what the FINALES2 tenant accepts, and every reason when it does not."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import HIU_2023

from asab.ledger.operator import refill
from asab.actions.vial import DEFAULT_VIAL_CAPACITY, FlowJob
from asab.actions.vial_state import VialOccupant, VialRegistry
from asab.broker.capabilities import (
    CAPABILITIES,
    TEMPERATURE_TOLERANCE,
    capability_limitations,
    check_request,
    limitations_document,
)
from asab.requests import DensityJob, capability_schema

KEYS = {"LiPF6": ("AXPLOJNSKRXQPA-UHFFFAOYSA-N", "[Li+].F[P-](F)(F)(F)(F)F"),
        "EC": ("KMTRUDSVKNLOMY-UHFFFAOYSA-N", "C1COC(=O)O1"),
        "EMC": ("JBTWLSYIZRCDFO-UHFFFAOYSA-N", "CCOC(=O)OC")}


def formulation(**fractions):
    return [{"chemical": {"SMILES": KEYS[n][1], "InChIKey": KEYS[n][0]}, "fraction": x,
             "fraction_type": "molPerMol"} for n, x in fractions.items()]


def density_request(temperature=None, uuid="d-1", **fractions):
    fractions = fractions or {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}
    return {"uuid": uuid, "status": "pending", "request": {
        "quantity": "density", "methods": ["vibrating_tube_densimetry"],
        "parameters": {"vibrating_tube_densimetry": {
            "formulation": formulation(**fractions), "temperature": temperature}},
        "tenant_uuid": "someone"}}


def flow_request(volume=2.6, uuid="f-1", **fractions):
    fractions = fractions or {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}
    return {"uuid": uuid, "status": "pending", "request": {
        "quantity": "electrolyte", "methods": ["flow"],
        "parameters": {"flow": {"electrolyte": {"formulation": formulation(**fractions)},
                                "volume": volume}},
        "tenant_uuid": "someone"}}


def test_makeable_density_request_is_accepted_with_plan_and_job(bench_config):
    acc = check_request(bench_config, density_request())
    assert acc.accepted and acc.reasons == []
    assert (acc.quantity, acc.method) == CAPABILITIES[0]
    assert isinstance(acc.job, DensityJob) and acc.job.request_id == "d-1"
    assert acc.temperature == bench_config.densimeter.temperature  # null → bench temperature
    assert acc.plan.makeable and acc.plan.distance < 1e-9


def test_makeable_flow_request_is_accepted_with_a_vial(bench_config):
    acc = check_request(bench_config, flow_request())
    assert acc.accepted, acc.reasons
    assert isinstance(acc.job, FlowJob) and acc.job.volume == 2.6
    assert acc.vial == bench_config.settings.vial_nodes[0]


def test_unmakeable_is_refused_naming_the_closest_composition(bench_config):
    acc = check_request(bench_config, density_request(LiPF6=0.3, EC=0.3, EMC=0.4))
    assert not acc.accepted
    assert len(acc.reasons) == 1 and "not makeable" in acc.reasons[0]
    assert set(acc.closest) == {"LiPF6", "EC", "EMC"}
    for name, x in acc.closest.items():
        assert f"{name}={x:.4f}" in acc.reasons[0]
    assert acc.plan is not None and not acc.plan.makeable


def test_policy_closest_accepts_with_a_note(bench_config):
    acc = check_request(bench_config, flow_request(LiPF6=0.3, EC=0.3, EMC=0.4), policy="closest")
    assert acc.accepted and acc.reasons == []
    assert any("closest" in n for n in acc.notes)
    assert acc.plan.flagged and acc.plan.policy == "closest"


def test_malformed_lists_every_schema_error(bench_config):
    req = density_request()
    params = req["request"]["parameters"]["vibrating_tube_densimetry"]
    params["formulation"][0]["fraction"] = "0.07"
    del params["formulation"][1]["fraction_type"]
    params["formulation"][2]["chemical"] = {"SMILES": "CCOC(=O)OC"}
    params["temperature"] = "hot"
    schema = capability_schema("density", "vibrating_tube_densimetry")["json_schema_specifications"]
    expected = list(jsonschema.Draft202012Validator(schema).iter_errors(params))
    acc = check_request(bench_config, req)
    assert not acc.accepted and len(expected) == 4
    assert len(acc.reasons) == len(expected)
    text = " | ".join(acc.reasons)
    for path in ("formulation/0/fraction", "formulation/1", "formulation/2/chemical", "temperature"):
        assert path in text


def test_missing_volume_and_unknown_chemical_and_fraction_type(bench_config):
    req = flow_request()
    del req["request"]["parameters"]["flow"]["volume"]
    assert any("'volume' is a required property" in r for r in check_request(bench_config, req).reasons)
    req = flow_request()
    items = req["request"]["parameters"]["flow"]["electrolyte"]["formulation"]
    items[0]["chemical"]["InChIKey"] = "XXXXXXXXXXXXXX-UHFFFAOYSA-N"
    items[1]["fraction_type"] = "gPerG"
    reasons = check_request(bench_config, req).reasons
    assert any("not known to this bench" in r for r in reasons)
    assert any("gPerG" in r for r in reasons)


def test_not_a_capability_or_not_an_object(bench_config):
    req = density_request()
    req["request"]["quantity"] = "conductivity"
    acc = check_request(bench_config, req)
    assert not acc.accepted and "not a capability" in acc.reasons[0]
    assert not check_request(bench_config, ["a list"]).accepted


@pytest.mark.parametrize("temperature, ok", [(298.15, True), (298.15 + TEMPERATURE_TOLERANCE / 2, True),
                                             (313.15, False), (-5.0, False)])
def test_temperature_servable(bench_config, temperature, ok):
    acc = check_request(bench_config, density_request(temperature=temperature))
    assert acc.accepted is ok
    if not ok:
        assert any("K" in r and "temperature" in r for r in acc.reasons)


@pytest.mark.parametrize("volume", [DEFAULT_VIAL_CAPACITY + 0.1, 1000.0, 0.0, -1.0])
def test_volume_beyond_the_vial_or_not_positive(bench_config, volume):
    acc = check_request(bench_config, flow_request(volume=volume))
    assert not acc.accepted and any("volume" in r for r in acc.reasons)


def test_no_stock_left_on_the_bench(sim_bench):
    cfg = sim_bench.config
    assert check_request(sim_bench, density_request()).accepted
    for stock in cfg.stocks:  # someone has used (almost) every reservoir
        refill(sim_bench.ledger, stock.reservoir, 0.5)
    for req in (density_request(), flow_request()):
        acc = check_request(sim_bench, req)
        assert not acc.accepted
        assert any("not enough stock" in r for r in acc.reasons)


def test_no_free_vial(bench_config, tmp_path):
    vials = VialRegistry(tmp_path / "vials.json")
    for v in bench_config.settings.vial_nodes[:-1]:
        vials.claim(VialOccupant(vial=v, request_id="x", job_id="j", time="t"))
    assert check_request(bench_config, flow_request(), vials=vials).vial == \
        bench_config.settings.vial_nodes[-1]
    vials.claim(VialOccupant(vial=bench_config.settings.vial_nodes[-1], request_id="y",
                             job_id="j", time="t"))
    acc = check_request(bench_config, flow_request(), vials=vials)
    assert not acc.accepted and any("no free vial" in r for r in acc.reasons)


def test_demo_requests_verdicts(bench_config):
    demo = json.loads((HIU_2023 / "demo_requests.json").read_text())
    verdicts = [check_request(bench_config, r).accepted for r in demo]
    assert verdicts.count(False) == 3  # unmakeable, malformed, too hot (README)


def test_limitations_document_has_the_2023_format_and_real_ranges(bench_config):
    doc = limitations_document(bench_config, contact_person="KIT-MV")
    assert set(doc) == {"name", "limitations", "contact_person"}
    by_cap = {(e["quantity"], e["method"]): e["limitations"] for e in doc["limitations"]}
    assert set(by_cap) == set(CAPABILITIES)
    items = {i["chemical"]["InChIKey"]: i for i in by_cap[CAPABILITIES[0]]["formulation"][0]}
    lipf6 = items[KEYS["LiPF6"][0]]["fraction"][0]
    assert lipf6["min"] == 0.0 and 0.14 < lipf6["max"] <= 0.1430
    assert items[KEYS["EMC"][0]]["fraction_type"] == ["molPerMol"]
    assert by_cap[CAPABILITIES[0]]["temperature"] == [{"min": 298.15, "max": 298.15}]
    assert by_cap[CAPABILITIES[1]]["volume"][0]["max"] == DEFAULT_VIAL_CAPACITY
    # bounds are rounded inwards: the LiPF6 maximum (with EMC) is makeable, a bit more is not
    top = flow_request(LiPF6=lipf6["max"], EMC=1 - lipf6["max"])
    assert check_request(bench_config, top, policy="reject").accepted
    beyond = flow_request(LiPF6=lipf6["max"] + 0.001, EMC=1 - lipf6["max"] - 0.001)
    assert not check_request(bench_config, beyond, policy="reject").accepted
    with pytest.raises(KeyError):
        capability_limitations(bench_config, "conductivity", "two_electrode")


def test_cli_limits_finales_prints_the_document():
    from typer.testing import CliRunner

    from asab.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["limits", "--finales", "--json", "--contact", "KIT-MV"],
                        catch_exceptions=False)
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc["contact_person"] == "KIT-MV" and len(doc["limitations"]) == 2
    table = runner.invoke(app, ["limits", "--finales"], catch_exceptions=False)
    assert table.exit_code == 0 and "electrolyte/flow" in table.output and "volume" in table.output
