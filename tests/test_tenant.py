"""The FINALES2 tenant worker against the in-process fake broker (quirks included).

Scenarios of issue 4: happy path for both capabilities, broker down mid-job, 401 after token
expiry, a network error after the broker stored a result, a request reopened after it was
served, an unmakeable and a malformed request, retraction before and during the run, a request
that keeps failing, and a restart with a request left running.
"""

from __future__ import annotations

import copy
import json

import pytest

from asab.broker import BrokerSettings, FinalesClient
from asab.broker.journal import Journal, JournalState
from asab.broker.tenant import Tenant, TenantSettings, journal_summary
from tests.fake_finales import TENANT_UUID, make_fake_finales

DENSITY = ("density", "vibrating_tube_densimetry")
FLOW = ("electrolyte", "flow")
LIPF6 = {"SMILES": "[Li+].F[P-](F)(F)(F)(F)F", "InChIKey": "AXPLOJNSKRXQPA-UHFFFAOYSA-N"}
EC = {"SMILES": "C1COC(=O)O1", "InChIKey": "KMTRUDSVKNLOMY-UHFFFAOYSA-N"}
EMC = {"SMILES": "CCOC(=O)OC", "InChIKey": "JBTWLSYIZRCDFO-UHFFFAOYSA-N"}


def formulation(x_li: float, x_ec: float, x_emc: float) -> list[dict]:
    return [{"chemical": c, "fraction": x, "fraction_type": "molPerMol"}
            for c, x in ((LIPF6, x_li), (EC, x_ec), (EMC, x_emc))]


GOOD = {"formulation": formulation(0.07, 0.29, 0.64), "temperature": 298.15}
GOOD2 = {"formulation": formulation(0.05, 0.25, 0.70), "temperature": 298.15}
UNMAKEABLE = {"formulation": formulation(0.06, 0.54, 0.40), "temperature": 298.15}
FLOW_PARAMS = {"electrolyte": {"formulation": formulation(0.07, 0.29, 0.64)}, "volume": 1.0}


class Clock:
    def __init__(self, now: float = 1.8e9):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server_clock():
    return Clock()


@pytest.fixture
def fake(server_clock):
    return make_fake_finales(clock=server_clock, token_lifetime=3600.0)


@pytest.fixture
def client(fake, server_clock):
    settings = BrokerSettings(url="http://finales.test", username="asab",
                              password="asab-password", tenant_uuid=TENANT_UUID)
    with FinalesClient(settings, transport=fake.transport(), clock=server_clock,
                       sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "state" / "journal.sqlite") as j:
        yield j


def make_tenant(sim_bench, client, journal, tmp_path, **settings) -> Tenant:
    return Tenant(sim_bench, client, journal, tmp_path / "state",
                  TenantSettings(poll_interval=0.01, **settings), run_id="test-run")


def states(journal: Journal, uid: str) -> list[str]:
    return [str(e.state) for e in journal.history(uid)]


def test_happy_path_both_capabilities(sim_bench, client, journal, fake, tmp_path):
    dens = fake.add_request(GOOD)
    flow = fake.add_request(FLOW_PARAMS, quantity=FLOW[0], method=FLOW[1])
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.serve(until_idle=True, max_cycles=5)
    for uid in (dens, flow):
        results = fake.results_for(uid)
        assert len(results) == 1, uid
        assert fake.requests[uid]["status"] == "resolved"
        assert states(journal, uid)[-3:] == ["running", "measured", "posted"]
        assert ("reserved" in [s for (r, s, _m) in fake.status_log if r == uid])
    density = fake.results_for(dens)[0]["result"]
    d = density["data"]["density"]
    assert density["data"]["run_info"]["internal_reference"].startswith("test-run/" + dens)
    assert len(d["values"]) == 3 and all(1.0 < v < 1.5 for v in d["values"])
    assert d["meta"]["success"] is True and 0 <= d["meta"]["rating"] <= 5
    made = {f["chemical"]["InChIKey"]: f["fraction"]
            for f in density["parameters"]["vibrating_tube_densimetry"]["formulation"]}
    assert made[LIPF6["InChIKey"]] == pytest.approx(0.07, abs=1e-3)
    electrolyte = fake.results_for(flow)[0]["result"]["data"]["electrolyte"]
    assert electrolyte["volume"] == pytest.approx(1.0, rel=0.02)
    # the result in the journal is the one on the broker
    measured = [e for e in journal.history(dens) if e.state == JournalState.MEASURED][0]
    assert measured.payload["result"]["data"] == density["data"]


def test_broker_down_mid_job_result_waits_in_journal(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.progress = lambda r, step: fake.go_down() if step == "running" else None
    report = tenant.cycle()
    assert report.served == [uid] and report.posted == [] and report.broker_errors
    assert journal.state(uid) == JournalState.MEASURED and fake.results_for(uid) == []
    fake.come_up()
    tenant.progress = None
    report = tenant.cycle()
    assert report.posted == [uid] and len(fake.results_for(uid)) == 1
    assert journal.state(uid) == JournalState.POSTED


def test_token_expiry_401_relogin(sim_bench, client, journal, fake, server_clock, tmp_path):
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.cycle()
    logins = fake.logins
    server_clock.now += 7200  # the fake's tokens live 1 h
    fake.restart(invalidate_tokens=True)  # and the cached token is no longer valid either
    uid = fake.add_request(GOOD)
    report = tenant.cycle()
    assert report.posted == [uid] and fake.logins > logins


def test_network_error_after_store_posts_no_duplicate(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    fake.drop_after_store(1)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    report = tenant.cycle()
    assert report.served == [uid] and len(fake.results_for(uid)) == 1
    tenant.cycle()
    assert len(fake.results_for(uid)) == 1
    posted = [e for e in journal.history(uid) if e.state == JournalState.POSTED]
    assert len(posted) == 1 and posted[0].payload["result_uuid"] == fake.results_for(uid)[0]["uuid"]


def test_reopened_request_is_not_served_again(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.cycle()
    client.update_request_status(uid, "pending", "reopened (guard bug)")
    report = tenant.cycle()
    assert uid in report.skipped and len(fake.results_for(uid)) == 1
    assert journal.state(uid) == JournalState.POSTED  # skipping does not hide the posted state


def test_unmakeable_not_reserved_malformed_rejected_loop_continues(sim_bench, client, journal,
                                                                    fake, tmp_path):
    bad = fake.add_request(UNMAKEABLE)
    broken = copy.deepcopy(GOOD)
    broken["formulation"][0]["fraction"] = "a lot"
    malformed = fake.add_request(broken)
    good = fake.add_request(GOOD2)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    report = tenant.cycle()
    assert set(report.rejected) == {bad, malformed} and report.posted == [good]
    reserved = {r for (r, s, _m) in fake.status_log if s == "reserved"}
    assert bad not in reserved and malformed not in reserved
    why = journal.history(bad)[-1].payload["why"]
    assert "closest" in why.lower() or "makeable" in why.lower()
    assert "a lot" in journal.history(malformed)[-1].payload["why"]
    tenant.cycle()  # seen again: no new rejection event for the same reason
    assert states(journal, bad).count("rejected") == 1


def test_retracted_before_wet_work_is_not_started(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    original = client.get_request

    def retract_then_read(request_id):
        fake.requests[request_id]["status"] = "retracted"
        return original(request_id)

    client.get_request = retract_then_read
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    report = tenant.cycle()
    assert uid in report.skipped and "running" not in states(journal, uid)
    assert sim_bench.drawn == {} or sum(sim_bench.drawn.values()) == 0


@pytest.mark.parametrize("policy", ["hold", "unsolicited"])
def test_retracted_during_the_run(policy, sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    tenant = make_tenant(sim_bench, client, journal, tmp_path, retracted=policy)

    def retract(r, step):
        if step == "running":
            fake.requests[r]["status"] = "retracted"

    tenant.progress = retract
    tenant.cycle()
    measured = [e for e in journal.history(uid) if e.state == JournalState.MEASURED]
    assert measured, "the result is kept in the journal"
    if policy == "hold":
        assert fake.results == [] and journal.state(uid) == JournalState.SKIPPED
    else:
        assert len(fake.results) == 1 and journal.state(uid) == JournalState.POSTED
    tenant.cycle()
    assert len(fake.results) == (0 if policy == "hold" else 1)


def test_failing_request_is_given_back_then_skipped(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    sim_bench.simulation.inject("densiVisco", "invalid_method")  # every job fails, in service
    tenant = make_tenant(sim_bench, client, journal, tmp_path, max_failures=2)
    for _ in range(4):
        tenant.cycle()
    assert journal.failure_count(uid) == 2
    assert states(journal, uid)[-1] == "skipped"
    assert fake.requests[uid]["status"] == "pending" and fake.results == []
    gave_back = [m for (r, s, m) in fake.status_log if r == uid and s == "pending"]
    assert len(gave_back) == 2 and all(m for m in gave_back)
    row = [r for r in journal_summary(journal) if r["request"] == uid][0]
    assert row["failures"] == 2 and row["state"] == "skipped"


def test_restart_gives_back_running_request_and_posts_unposted(sim_bench, client, journal, fake,
                                                               tmp_path):
    running, measured = fake.add_request(GOOD), fake.add_request(GOOD2)
    # a previous process: one request reserved and running, one measured but not posted
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.progress = lambda r, step: fake.go_down() if step == "running" else None
    tenant.consider(fake.requests[measured], tenant_report := __import__(
        "asab.broker.tenant", fromlist=["CycleReport"]).CycleReport())
    assert journal.state(measured) == JournalState.MEASURED and not tenant_report.posted
    fake.come_up()
    client.update_request_status(running, "reserved", "x")
    journal.append(running, JournalState.SEEN, {"request": fake.requests[running]})
    journal.append(running, JournalState.RESERVED, {})
    journal.append(running, JournalState.RUNNING, {"reference": "old/1", "attempt": 1})
    fresh = make_tenant(sim_bench, client, journal, tmp_path)
    report = fresh.resume()
    assert running in report.failed
    assert fake.requests[running]["status"] == "pending"
    message = [m for (r, s, m) in fake.status_log if r == running and s == "pending"][-1]
    assert "restarted" in message and "drained" in message
    assert report.posted == [measured] and len(fake.results_for(measured)) == 1
    fresh.serve(until_idle=True, max_cycles=4)
    assert len(fake.results_for(running)) == 1 and len(fake.results_for(measured)) == 1


def test_refused_post_is_retried_then_given_back(sim_bench, client, journal, fake, tmp_path):
    """A 500 text/plain on POST /results/ (a crashing broker answers the same as a schema
    refusal, quirk 1): the result stays in the journal and is posted on a later cycle; after
    ``max_post_refusals`` refusals the request is given back."""
    from asab.errors import BrokerError

    uid, other = fake.add_request(GOOD), fake.add_request(GOOD2)
    real_post, refusals = client.post_result, {"left": 1}

    def flaky(body):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise BrokerError("POST /results/: 500 Internal Server Error", status=500,
                              permanent=True)
        return real_post(body)

    client.post_result = flaky
    tenant = make_tenant(sim_bench, client, journal, tmp_path, max_post_refusals=2)
    tenant.cycle()
    refused = [u for u in (uid, other) if "refused" in states(journal, u)]
    assert len(refused) == 1 and fake.results_for(refused[0]) == []
    done = other if refused[0] == uid else uid
    assert len(fake.results_for(done)) == 1  # the loop went on
    tenant.cycle()
    assert len(fake.results_for(refused[0])) == 1
    assert journal.state(refused[0]) == JournalState.POSTED

    third = fake.add_request({"formulation": formulation(0.03, 0.3, 0.67),
                              "temperature": 298.15})
    refusals["left"] = 5
    tenant.cycle()
    tenant.cycle()
    assert states(journal, third)[-3:] == ["refused", "skipped", "given_back"]
    assert fake.requests[third]["status"] == "pending" and fake.results_for(third) == []
    assert any(e.state == JournalState.MEASURED for e in journal.history(third))


def test_poison_request_does_not_stop_the_tenant(sim_bench, client, journal, fake, tmp_path):
    """A JSON integer beyond any float passes the schema; it is rejected, the loop goes on."""
    poison = fake.add_request({"formulation": formulation(0.07, 0.29, 0.64),
                               "temperature": 10 ** 400})
    good = fake.add_request(GOOD)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    report = tenant.cycle()
    assert poison in report.rejected and report.posted == [good]
    assert "not a temperature" in journal.history(poison)[-1].payload["why"]


@pytest.mark.parametrize("pipelined", [False, True])
def test_unexpected_error_gives_back_and_goes_on(sim_bench, client, journal, fake, tmp_path,
                                                  monkeypatch, pipelined):
    import asab.broker.tenant as tenant_module

    bad, good = fake.add_request(GOOD), fake.add_request(GOOD2)
    real = tenant_module.run_density_job
    calls = []

    def boom(bench, job, job_id, **kw):
        calls.append(job_id)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(bench, job, job_id, **kw)

    monkeypatch.setattr(tenant_module, "run_density_job", boom)
    tenant = make_tenant(sim_bench, client, journal, tmp_path, pipelined=pipelined)
    report = tenant.cycle()
    first = bad if calls[0].startswith(bad[:8]) else good
    assert first in report.failed and fake.requests[first]["status"] == "pending"
    assert "a bug" in journal.history(first)[-2].payload["why"]
    assert len(report.posted) == 1


def test_out_of_service_bench_takes_nothing(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    sim_bench.out_of_service = "valve V3 stuck"
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    reports = tenant.serve(until_idle=True, max_cycles=3)
    assert reports[-1].out_of_service == "valve V3 stuck"
    assert journal.state(uid) is None and fake.requests[uid]["status"] == "pending"
    assert not [s for (r, s, _m) in fake.status_log if r == uid]


def test_held_result_posted_unsolicited_after_a_policy_change(sim_bench, client, journal, fake,
                                                             tmp_path):
    uid = fake.add_request(GOOD)
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    tenant.progress = lambda r, step: fake.requests[r].update(status="retracted") \
        if step == "running" else None
    tenant.cycle()
    assert fake.results == [] and journal.state(uid) == JournalState.SKIPPED
    make_tenant(sim_bench, client, journal, tmp_path).cycle()  # policy hold: still kept back
    assert fake.results == []
    make_tenant(sim_bench, client, journal, tmp_path, retracted="unsolicited").cycle()
    assert len(fake.results) == 1 and journal.state(uid) == JournalState.POSTED


def test_a_latched_estop_takes_nothing(sim_bench, client, journal, fake, tmp_path):
    uid = fake.add_request(GOOD)
    sim_bench.emergency_stop("operator: leak")
    tenant = make_tenant(sim_bench, client, journal, tmp_path)
    reports = tenant.serve(until_idle=True, max_cycles=3)
    assert reports[-1].out_of_service == "emergency stop latched: operator: leak"
    assert journal.state(uid) is None and fake.requests[uid]["status"] == "pending"


def _reservations(tenant, bench) -> list[tuple[str, float]]:
    """Wrap the client: (request uuid, bench time) of every reservation."""
    out: list[tuple[str, float]] = []
    real = tenant.client.update_request_status

    def update(uid, status, message=""):
        if status == "reserved":
            out.append((uid, bench.clock.now()))
        return real(uid, status, message)
    tenant.client.update_request_status = update
    return out


@pytest.mark.parametrize("pipelined", [True, False])
def test_pipelined_tenant_prepares_the_next_request_but_holds_at_most_one_ahead(
        sim_bench, client, journal, fake, tmp_path, pipelined):
    """Three density requests: pipelined, the second is reserved (and runs) while the first
    is still on the bench, the third only once the first has ended; sequential, each is
    reserved after the one before ended. Every result is posted either way."""
    uids = [fake.add_request(GOOD), fake.add_request(GOOD2), fake.add_request(GOOD)]
    tenant = make_tenant(sim_bench, client, journal, tmp_path, pipelined=pipelined)
    log = _reservations(tenant, sim_bench)
    report = tenant.cycle()
    reserved = dict(log)
    assert sorted(report.posted) == sorted(uids)
    records = {}
    for path in (tmp_path / "state" / "records").glob("*.json"):
        rec = json.loads(path.read_text())
        records[rec["request_id"]] = rec
    end = {u: max(s["end"] for s in records[u]["step_times"]) for u in uids}
    start = {u: min(s["start"] for s in records[u]["step_times"]) for u in uids}
    first, second, third = [u for u, _ in log]  # in the order they were reserved
    assert reserved[third] >= end[first] - 1e-9  # never more than one request ahead
    if pipelined:
        assert reserved[second] < end[first] and start[second] < end[first]
    else:
        assert reserved[second] >= end[first] - 1e-9


def test_a_failure_in_a_pipelined_tenant_gives_the_prepared_request_back(
        sim_bench, client, journal, fake, tmp_path):
    """The densimeter never exports job 1's result while job 2 is being prepared: job 1
    fails (recovered, given back, one failure counted); job 2 had not mixed, so it is stopped
    and given back without a failure; once the fault is gone the next cycle serves both."""
    uids = [fake.add_request(GOOD), fake.add_request(GOOD2)]
    tenant = make_tenant(sim_bench, client, journal, tmp_path, pipelined=True)
    sim_bench.simulation.inject("densiVisco", "no_export")
    report = tenant.cycle()
    assert len(report.failed) == 1 and report.posted == []
    first = report.failed[0]
    second = next(u for u in uids if u != first)
    assert states(journal, second)[-2:] == ["running", "given_back"]
    assert "before its sample was mixed" in journal.history(second)[-1].payload["why"]
    assert fake.requests[second]["status"] == "pending"
    assert fake.requests[first]["status"] == "pending"
    sim_bench.simulation.clear_faults()
    again = tenant.cycle()
    assert sorted(again.posted) == sorted(uids)
