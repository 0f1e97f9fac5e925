"""FinalesClient against the fake FINALES2 (tests/fake_finales.py), quirks included."""

from __future__ import annotations

import copy
import math
import time

import httpx
import pytest

from asab.broker import BrokerSettings, FinalesClient, LocalValidationError, PostOutcomeUnknown
from asab.broker.client import token_expiry
from asab.errors import BrokerError, ConfigError, RequestError
from simulators.clock import VirtualClock
from tests.fake_finales import TENANT_UUID, make_fake_finales, serve_fake

DENSITY = "vibrating_tube_densimetry"
FORMULATION = [
    {"chemical": {"SMILES": "[Li+].F[P-](F)(F)(F)(F)F", "InChIKey": "AXPLOJNSKRXQPA-UHFFFAOYSA-N"},
     "fraction": 0.07, "fraction_type": "molPerMol"},
    {"chemical": {"SMILES": "C1COC(=O)O1", "InChIKey": "KMTRUDSVKNLOMY-UHFFFAOYSA-N"},
     "fraction": 0.29, "fraction_type": "molPerMol"},
    {"chemical": {"SMILES": "CCOC(=O)OC", "InChIKey": "JBTWLSYIZRCDFO-UHFFFAOYSA-N"},
     "fraction": 0.64, "fraction_type": "molPerMol"},
]
PARAMS = {"formulation": FORMULATION, "temperature": 298.15}


class Clock:
    def __init__(self, now: float = 1.8e9):
        self.now = now

    def __call__(self) -> float:
        return self.now


def result_for(request_id: str, values=(1.2102, 1.2101, 1.2103), ref: str = "asab-1") -> dict:
    meta = {"success": True, "rating": 5}
    return copy.deepcopy({
        "data": {"run_info": {"formulation": FORMULATION, "internal_reference": ref,
                              "formulation_info": None, "chemicals_info": None},
                 "density": {"values": list(values), "temperature": 298.15, "meta": meta},
                 "viscosity": {"values": [2.9, 2.91, 2.9], "temperature": 298.15, "meta": meta}},
        "quantity": "density", "method": [DENSITY], "parameters": {DENSITY: PARAMS},
        "tenant_uuid": TENANT_UUID, "request_uuid": request_id,
    })


@pytest.fixture
def server_clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(server_clock):
    return make_fake_finales(clock=server_clock, token_lifetime=3600.0)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def settings(url: str = "http://finales.test", **kw) -> BrokerSettings:
    return BrokerSettings(url=url, username="asab", password="asab-password",
                          tenant_uuid=TENANT_UUID, **kw)


@pytest.fixture
def client_clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake, sleeps, client_clock):
    with FinalesClient(settings(), transport=fake.transport(), clock=client_clock,
                       sleep=sleeps.append, rng=lambda: 0.5) as c:
        yield c


# -- login and tokens ---------------------------------------------------------------------
def test_form_login_token_cached(client, fake):
    assert client.hello() == "Hello! This is FINALES2."
    client.hello()
    assert fake.logins == 1 and client.logins == 1
    assert fake.calls[0] == ("POST", "/user_management/authenticate")
    assert token_expiry(client._token) == pytest.approx(1.8e9 + 3600.0)


def test_fake_refuses_json_login_and_distinguishes_unknown_user(fake):
    with httpx.Client(transport=fake.transport(), base_url="http://f") as raw:
        body = {"username": "asab", "password": "asab-password"}
        assert raw.post("/user_management/authenticate", json=body).status_code == 422
        assert raw.post("/user_management/authenticate", data=body).status_code == 200
        assert raw.get("/").status_code == 401


@pytest.mark.parametrize("user, password, status", [("asab", "wrong", 401), ("nobody", "x", 404)])
def test_bad_credentials_are_permanent(fake, user, password, status):
    s = BrokerSettings(url="http://f", username=user, password=password, tenant_uuid=TENANT_UUID)
    with FinalesClient(s, transport=fake.transport()) as c, pytest.raises(BrokerError) as err:
        c.hello()
    assert err.value.status == status and err.value.permanent


def test_expired_token_401_relogin_and_one_retry(client, fake, server_clock):
    client.hello()
    server_clock.now += 3601  # the broker sees the token expired; the client's clock does not
    assert client.hello().startswith("Hello")
    assert fake.logins == 2
    assert [c[1] for c in fake.calls] == ["/user_management/authenticate", "/", "/",
                                          "/user_management/authenticate", "/"]


def test_token_renewed_before_expiry_without_a_401(client, fake, client_clock, server_clock):
    client.hello()
    client_clock.now += 3600 - 60  # within the margin (min(300 s, lifetime/2))
    server_clock.now += 3600 - 60
    client.hello()
    assert fake.logins == 2 and len(fake.calls) == 4  # login, /, login, /: no 401 round trip


def test_tokens_survive_a_broker_restart(client, fake):
    """FINALES2 keeps its signing secret in its configuration: no new login after a restart."""
    client.hello()
    fake.restart()
    assert client.pending_requests() == []
    assert fake.logins == 1


def test_restart_invalidates_tokens_client_recovers(client, fake):
    client.hello()
    fake.restart(invalidate_tokens=True)  # e.g. the operator changed the broker's secret
    assert client.pending_requests() == []
    assert fake.logins == 2


def test_persistent_401_is_permanent_after_one_relogin(client, fake):
    client.hello()
    fake.users["asab"] = "changed"
    fake.restart(invalidate_tokens=True)
    with pytest.raises(BrokerError) as err:
        client.hello()
    assert err.value.status == 401 and err.value.permanent
    assert [c[1] for c in fake.calls[2:]] == ["/", "/user_management/authenticate"]


# -- requests -----------------------------------------------------------------------------
def test_pending_requests_filter_and_unknown_id(client, fake):
    a = fake.add_request(PARAMS)
    b = fake.add_request({"electrolyte": {"formulation": FORMULATION}, "volume": 2.5},
                         quantity="electrolyte", method="flow")
    fake.add_request(PARAMS, status="resolved")
    assert {r.uuid for r in client.pending_requests()} == {a, b}
    only = client.pending_requests("density", DENSITY)
    assert [r.uuid for r in only] == [a] and only[0].request.parameters[DENSITY] == PARAMS
    assert client.get_request(a).status == "pending"
    assert client.get_request("6b1f5d0e-1111-4222-8333-444455556666") is None


def test_malformed_pending_item_is_skipped(client, fake):
    good = fake.add_request(PARAMS)
    bad = fake.add_request(PARAMS)
    del fake.requests[bad]["request"]["methods"]
    assert [r.uuid for r in client.pending_requests()] == [good]


def test_update_status_query_id_counts_and_reservation_not_exclusive(client, fake):
    rid = fake.add_request(PARAMS)
    assert client.update_request_status(rid, "reserved", "asab") == \
        "Successful change of status to reserved"
    with FinalesClient(settings(), transport=fake.transport()) as other:
        other.update_request_status(rid, "reserved", "someone else")  # quirk 4
    assert fake.requests[rid]["status"] == "reserved"
    assert [m for _, _, m in fake.status_log] == ["asab", "someone else"]
    _, path = fake.calls[-1]
    assert path == f"/requests/{rid}/update_status/"
    with pytest.raises(LocalValidationError):
        client.update_request_status(rid, "resolved")  # type: ignore[arg-type]


def test_check_request_validates_against_capability_schema(client, fake):
    good = fake.add_request(PARAMS)
    bad = fake.add_request({"formulation": [{"chemical": {"SMILES": "C"}, "fraction": "x"}]})
    infos = {r.uuid: r for r in client.pending_requests()}
    assert client.check_request(infos[good], DENSITY) == PARAMS
    with pytest.raises(RequestError, match="InChIKey"):
        client.check_request(infos[bad], DENSITY)
    with pytest.raises(RequestError, match="does not offer"):
        client.check_request(infos[good], "flow")
    odd = fake.add_request(PARAMS)
    fake.requests[odd]["request"]["parameters"][DENSITY] = [1, 2]  # parsed, then rejected
    with pytest.raises(RequestError, match="not of type 'object'"):
        client.check_request(client.get_request(odd), DENSITY)


# -- results ------------------------------------------------------------------------------
def test_post_result_round_trip_resolves_and_can_come_back(client, fake):
    rid = fake.add_request(PARAMS)
    uuid = client.post_result(result_for(rid))
    assert fake.requests[rid]["status"] == "resolved"
    got = client.get_result(uuid)
    assert got.status == "original" and got.result.data["density"]["values"][0] == 1.2102
    assert client.result_for_request(rid).uuid == uuid
    assert [r.uuid for r in client.results_requested("density", DENSITY)] == [uuid]
    assert client.results_requested("electrolyte", "flow") == []
    client.update_request_status(rid, "pending")  # quirk 5: resolved → pending accepted
    assert [r.uuid for r in client.pending_requests()] == [rid]
    assert client.get_result("6b1f5d0e-1111-4222-8333-444455556666") is None


def test_duplicates_stored_first_one_returned_and_amend(client, fake):
    rid = fake.add_request(PARAMS)
    first = client.post_result(result_for(rid, ref="a"))
    second = client.post_result(result_for(rid, ref="b"))
    assert len(fake.results_for(rid)) == 2 and first != second  # quirk 3
    assert client.result_for_request(rid).uuid == first
    client.update_result_status(first, "amended")
    assert client.get_result(first).status == "amended"


def test_unsolicited_result(client, fake):
    body = result_for("")
    uuid = client.post_unsolicited_result(body)
    assert fake.results[0]["uuid"] == uuid and fake.results[0]["result"]["request_uuid"] == ""
    with pytest.raises(LocalValidationError, match="unsolicited"):
        client.post_result(body)


def test_invalid_result_refused_before_sending(client, fake):
    rid = fake.add_request(PARAMS)
    body = result_for(rid)
    del body["data"]["density"]
    body["parameters"][DENSITY]["temperature"] = "hot"
    with pytest.raises(LocalValidationError) as err:
        client.post_result(body)
    assert "data/(root)" in str(err.value) and "parameters/temperature" in str(err.value)
    assert err.value.permanent and err.value.status is None
    assert not [c for c in fake.calls if c[1] == "/results/"]


@pytest.mark.parametrize("where", ["data", "parameters"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_refused_before_sending(client, fake, where, bad):
    rid = fake.add_request(PARAMS)
    body = result_for(rid)
    if where == "data":
        body["data"]["density"]["values"][1] = bad
    else:
        body["parameters"][DENSITY]["temperature"] = bad
    with pytest.raises(LocalValidationError, match="non-finite"):
        client.post_result(body)
    assert fake.results == [] and not [c for c in fake.calls if c[0] == "POST"][1:]


def test_fake_stores_nan_as_null(fake):
    rid = fake.add_request(PARAMS)
    body = result_for(rid, values=(1.2, math.nan, 1.2))
    with httpx.Client(transport=fake.transport(), base_url="http://f") as raw:
        token = raw.post("/user_management/authenticate",
                         data={"username": "asab", "password": "asab-password"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}",
                   "Content-Type": "application/json"}
        import json
        raw.post("/results/", content=json.dumps(body), headers=headers).raise_for_status()
    assert fake.results[0]["result"]["data"]["density"]["values"] == [1.2, None, 1.2]


def permissive(quantity: str, method: str) -> dict:
    return {"json_schema_specifications": {}, "json_schema_result_output": {}}


def _refused_by_the_broker(fake) -> tuple[str, dict]:
    """A request and a result for it that only the broker's own schema check refuses (500)."""
    rid = fake.add_request(PARAMS)
    body = result_for(rid)
    body["parameters"][DENSITY]["formulation"] = "LiPF6"
    return rid, body


def _unchecked_client(fake, sleeps) -> FinalesClient:
    """A client whose local schema check lets everything through (to reach the broker's)."""
    return FinalesClient(settings(), transport=fake.transport(), sleep=sleeps.append,
                         schemas=permissive)


def test_schema_500_is_permanent_and_not_retried(fake, sleeps):
    rid, body = _refused_by_the_broker(fake)
    with _unchecked_client(fake, sleeps) as c:
        with pytest.raises(BrokerError) as err:
            c.post_result(body)
        assert err.value.status == 500 and err.value.permanent
        with pytest.raises(BrokerError) as err:
            c.post_request({"quantity": "density", "methods": [DENSITY],
                            "parameters": {DENSITY: {"temperature": 300}},
                            "tenant_uuid": TENANT_UUID})
        assert err.value.status == 500 and err.value.permanent
    assert sleeps == [] and fake.results == []


def test_post_request_validated_locally(client, fake):
    req = {"quantity": "density", "methods": [DENSITY], "parameters": {DENSITY: PARAMS},
           "tenant_uuid": TENANT_UUID}
    rid = client.post_request(req)
    assert fake.requests[rid]["request"]["parameters"][DENSITY] == PARAMS
    bad = copy.deepcopy(req)
    del bad["parameters"][DENSITY]["formulation"]
    with pytest.raises(LocalValidationError, match="formulation"):
        client.post_request(bad)


# -- transient failures -------------------------------------------------------------------
def test_transient_503_retried_with_bounded_backoff(client, fake, sleeps):
    fake.fail_next(2, 503)
    assert client.hello().startswith("Hello")
    assert sleeps == [pytest.approx(0.375), pytest.approx(0.75)]  # rng 0.5: cap·(1/2 + 0.5/2)


def test_transient_gives_up_after_max_attempts(fake, sleeps):
    s = settings(max_attempts=5, backoff_base=1.0, backoff_max=3.0)
    with FinalesClient(s, transport=fake.transport(), sleep=sleeps.append, rng=lambda: 0.999) as c:
        fake.fail_next(50, 502)
        with pytest.raises(BrokerError) as err:
            c.hello()
    assert err.value.status == 502 and not err.value.permanent
    assert len(fake.calls) == 5 and len(sleeps) == 4
    assert all(d <= 3.0 for d in sleeps) and sleeps[-1] == pytest.approx(3.0, abs=0.01)


def test_backoff_waits_on_the_injected_clock_never_in_real_time(fake, monkeypatch):
    """Minutes of backoff pass on a virtual clock in no wall time; a real sleep would fail."""
    def no_real_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s of real time")

    monkeypatch.setattr(time, "sleep", no_real_sleep)
    clock = VirtualClock(max_step=10.0)
    s = settings(max_attempts=4, backoff_base=30.0, backoff_max=60.0)
    wall = time.monotonic()
    with FinalesClient(s, transport=fake.transport(), sleep=clock.sleep, rng=lambda: 0.5) as c:
        fake.fail_next(3, 503)
        assert c.hello().startswith("Hello")
    assert clock.now() == pytest.approx(0.75 * (30.0 + 60.0 + 60.0))  # cap·(1/2 + 0.5/2)
    assert time.monotonic() - wall < 5.0


def test_connection_refused_retried_even_for_post(client, fake, sleeps):
    rid = fake.add_request(PARAMS)
    client.hello()
    fake.go_down("refused")
    with pytest.raises(BrokerError) as err:
        client.pending_requests()
    assert not err.value.permanent and len(sleeps) == 3
    sleeps.clear()
    client._sleep = lambda s: (sleeps.append(s), fake.come_up())
    assert client.post_result(result_for(rid))  # never sent before: safe to retry
    assert len(fake.results) == 1 and len(sleeps) == 1


def test_network_error_after_store_is_outcome_unknown(client, fake, sleeps):
    rid = fake.add_request(PARAMS)
    fake.drop_after_store()
    with pytest.raises(PostOutcomeUnknown) as err:
        client.post_result(result_for(rid, ref="key-1"))
    assert not err.value.permanent and sleeps == []
    assert len(fake.results) == 1  # stored once, not re-posted
    found = client.result_for_request(rid)  # what the caller must do before posting again
    assert found.result.data["run_info"]["internal_reference"] == "key-1"


def test_5xx_on_post_is_outcome_unknown_not_retried(client, fake, sleeps):
    rid = fake.add_request(PARAMS)
    client.hello()
    fake.fail_next(1, 503)
    with pytest.raises(PostOutcomeUnknown):
        client.post_result(result_for(rid))
    assert sleeps == [] and fake.results == []


def test_wrong_trailing_slash_is_a_307_error(client, fake):
    with pytest.raises(BrokerError) as err:
        client._call("GET", "/pending_requests")
    assert err.value.status == 307 and err.value.permanent
    assert "trailing slash" in str(err.value)


def test_ids_must_be_uuids(client):
    with pytest.raises(BrokerError):
        client.get_request("../tenants/")


# -- catalogue and tenant -----------------------------------------------------------------
def test_capabilities_limitations_tenants(fake):
    lim = {"quantity": "density", "method": DENSITY, "limitations": {"temperature": [{"min": 293}]}}
    tenant = {"tenant_uuid": TENANT_UUID, "name": "ASAB_tenant", "limitations": [lim],
              "contact_person": "x", "is_active": True}
    fake.tenants[:] = [tenant]
    with FinalesClient(settings(), transport=fake.transport()) as c:
        caps = {(k.quantity, k.method) for k in c.capabilities()}
        assert caps == {("density", DENSITY), ("electrolyte", "flow")}
        assert c.limitations()[0].limitations == [lim["limitations"]]
        assert c.check_tenant().name == "ASAB_tenant"
        fake.tenants[0]["tenant_uuid"] = "0f0e0d0c-0b0a-4909-8807-060504030201"
        with pytest.raises(BrokerError, match="not registered") as err:
            c.check_tenant()
        assert err.value.permanent


# -- settings -----------------------------------------------------------------------------
def test_settings_from_toml_and_environment(tmp_path):
    (tmp_path / "broker.toml").write_text(
        'url = "http://127.0.0.1:1/"\nusername = "a"\npassword = "file-secret"\n'
        'tenant_uuid = "t"\ntimeout = 3.5\n')
    s = BrokerSettings.load(tmp_path, env={})
    assert s.url == "http://127.0.0.1:1" and s.timeout == 3.5
    s = BrokerSettings.load(tmp_path, env={"ASAB_BROKER_PASSWORD": "env-secret",
                                           "ASAB_TENANT_UUID": "u"})
    assert s.password.get_secret_value() == "env-secret" and s.tenant_uuid == "u"
    assert "env-secret" not in repr(s)
    env_only = {"ASAB_BROKER_URL": "https://b", "ASAB_BROKER_USERNAME": "a",
                "ASAB_BROKER_PASSWORD": "p", "ASAB_TENANT_UUID": "u"}
    assert BrokerSettings.load(None, env=env_only).url == "https://b"


def test_settings_problems(tmp_path):
    (tmp_path / "broker.toml").write_text('url = "ftp://x"\npassword = "hunter2"\nretries = 3\n')
    with pytest.raises(ConfigError) as err:
        BrokerSettings.load(tmp_path / "broker.toml", env={})
    text = str(err.value)
    for field in ("url", "username", "tenant_uuid", "retries"):
        assert field in text
    assert "hunter2" not in text


# -- over a real socket -------------------------------------------------------------------
def test_live_server_timeout_refusal_restart(sleeps):
    fake = make_fake_finales()
    with serve_fake(fake) as live:
        s = settings(live.url, timeout=0.3, backoff_base=0.01)
        with FinalesClient(s, sleep=sleeps.append) as c:
            assert c.hello().startswith("Hello")
            fake.delay_next(1, 0.6)
            assert c.tenants()[0].tenant_uuid == TENANT_UUID  # timed out once, then retried
            assert len(sleeps) == 1
            live.stop()
            with pytest.raises(BrokerError, match="cannot connect") as err:
                c.hello()
            assert not err.value.permanent
            live.restart()
            assert c.hello().startswith("Hello") and fake.logins == 1  # tokens survive a restart


# ---------------------------------------------------- the fake answers as FINALES2 1.1.0 does
def _raw(fake, client) -> httpx.Client:
    """A plain httpx client with a valid token, to see the broker's own answers."""
    token = client.login()
    return httpx.Client(base_url="http://broker", transport=fake.transport(),
                        headers={"Authorization": f"Bearer {token}"})


def test_the_fake_answers_400_where_finales2_does(client, fake):
    raw = _raw(fake, client)
    rid = fake.add_request(PARAMS)
    unknown = "7f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
    request = {"quantity": "conductivity", "methods": ["x"], "parameters": {"x": {}},
               "tenant_uuid": TENANT_UUID}
    assert raw.post("/requests/", json=request).status_code == 400
    assert raw.post(f"/requests/{unknown}/update_status/",
                    params={"request_id": unknown, "new_status": "reserved"}).status_code == 400
    assert raw.post(f"/requests/{rid}/update_status/",
                    params={"request_id": rid, "new_status": "resolved"}).status_code == 400
    assert raw.get("/requests/not-a-uuid").status_code == 400
    stored = client.post_result(result_for(rid))
    assert raw.post(f"/results/{stored}/update_status/",
                    params={"result_id": stored, "new_status": "original"}).status_code == 400
    assert raw.post("/results/", json=result_for(unknown)).status_code == 400
    assert len(fake.results) == 1
    r = httpx.Client(base_url="http://broker", transport=fake.transport()).get(
        "/", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_the_client_meets_each_400_as_a_permanent_error(client, fake, sleeps):
    unknown = "7f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
    with pytest.raises(BrokerError) as err:
        client.update_request_status(unknown, "reserved")
    assert err.value.status == 400 and err.value.permanent
    with pytest.raises(BrokerError) as err:
        client.post_result(result_for(unknown))
    assert err.value.status == 400 and err.value.permanent
    with pytest.raises(LocalValidationError):
        client.update_result_status(unknown, "original")  # refused before sending
    with pytest.raises(BrokerError, match="not a uuid"):
        client.get_request("not-a-uuid")
    assert sleeps == [] and fake.results == []


def test_the_token_exp_is_an_integer(client, fake):
    exp = token_expiry(client.login())
    assert exp is not None and float(exp).is_integer()


def test_after_a_500_the_next_get_goes_on_a_fresh_connection(client, fake, sleeps):
    """FINALES2 closes the connection after an unhandled 500 without ``Connection: close``;
    the client drops its kept-alive connections, so the next GET does not fail on it."""
    rid, body = _refused_by_the_broker(fake)
    with _unchecked_client(fake, sleeps) as strict:
        with pytest.raises(BrokerError) as err:
            strict.post_result(body)
        assert err.value.status == 500
        assert strict.get_request(rid).uuid == rid
    assert sleeps == []


def test_after_a_500_on_the_live_fake_the_next_get_succeeds(sleeps):
    with serve_fake() as live:
        rid, body = _refused_by_the_broker(live.fake)
        with FinalesClient(settings(url=live.url), sleep=sleeps.append, schemas=permissive) as c:
            for _ in range(5):
                with pytest.raises(BrokerError):
                    c.post_result(body)
                assert c.get_request(rid).uuid == rid
        assert sleeps == []
