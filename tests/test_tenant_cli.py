"""``asab run --broker``, ``asab journal``, ``asab vials`` and ``asab tenant --help`` against the
fake FINALES2 broker live on loopback."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from tests._tenant_support import (
    ASAB,
    MAKEABLE,
    UNMAKEABLE,
    add_density,
    add_flow,
    broker_env,
)
from tests.fake_finales import TENANT_UUID, make_fake_finales, serve_fake

runner = CliRunner()

BROKER_TOML = """\
[broker]
url = "{url}"
username = "asab"
password = "asab-password"
tenant_uuid = "{tenant}"

[tenant]
poll_interval = 0.05
max_failures = 2
"""


@pytest.fixture
def live():
    fake = make_fake_finales()
    with serve_fake(fake) as served:
        yield served


@pytest.fixture
def quiet_signals(monkeypatch):
    """In-process runs must not install SIGTERM/SIGINT handlers in pytest's process."""
    import threading

    from asab.cli import cmd_tenant

    monkeypatch.setattr(cmd_tenant, "_stop_on_signals", threading.Event)


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_run_broker_serves_every_request_and_prints_json(live, tmp_path):
    fake = live.fake
    served = [add_density(fake, MAKEABLE[0]), add_flow(fake, MAKEABLE[1], 0.8)]
    refused = add_density(fake, UNMAKEABLE)
    state = tmp_path / "tenant"
    cmd = [*ASAB, "run", "--broker", live.url, "--out", str(state), "--json"]
    proc = subprocess.run(cmd, env=broker_env("http://unused.invalid"), capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # progress lines went to stderr
    rows = {r["request"]: r for r in out["requests"]}
    assert set(rows) == {*served, refused} and out["served"] == out["posted"] == 2
    for uid in served:
        (result,) = fake.results_for(uid)
        assert rows[uid]["state"] == "posted" and rows[uid]["result_uuid"] == result["uuid"]
        assert rows[uid]["success"] is True and rows[uid]["failed"] is False
    assert rows[refused]["state"] == "rejected" and rows[refused]["failed"] is False
    assert fake.requests[refused]["status"] == "pending"  # never reserved

    again = subprocess.run(cmd, env=broker_env(live.url), capture_output=True, text=True,
                           timeout=240, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["requests"] == []  # nothing new: nothing touched
    assert all(len(fake.results_for(uid)) == 1 for uid in served)

    journal = runner.invoke(app, ["journal", "--out", str(state), "--json"])
    assert journal.exit_code == 0, journal.output
    summary = {r["request"]: r for r in json.loads(journal.stdout)}
    assert {summary[u]["state"] for u in served} == {"posted"}
    assert summary[refused]["state"] == "rejected" and "makeable" in summary[refused]["why"]
    vials = runner.invoke(app, ["vials", "--out", str(state), "--json"])
    (vial,) = json.loads(vials.stdout)
    assert vial["request_id"] == served[1] and vial["status"] == "filled"
    released = runner.invoke(app, ["vials", "--out", str(state), "--release", vial["vial"],
                                   "--json"])
    assert released.exit_code == 0 and json.loads(released.stdout) == []


def test_run_broker_exit_3_when_a_request_fails(live, tmp_path, monkeypatch, quiet_signals):
    """The densimeter rejects every job: the request fails twice (limit from broker.toml), is given back each
    time with the reason, then skipped; the run exits 3 and shows it."""
    import contextlib

    from asab.cli import cmd_tenant

    original = cmd_tenant._bench

    @contextlib.contextmanager
    def faulty_bench(*args, **kwargs):
        with original(*args, **kwargs) as bench:
            bench.simulation.inject("densiVisco", "invalid_method")  # every job fails
            yield bench

    monkeypatch.setattr(cmd_tenant, "_bench", faulty_bench)
    for var in ("ASAB_BROKER_URL", "ASAB_BROKER_USERNAME", "ASAB_BROKER_PASSWORD",
                "ASAB_TENANT_UUID"):
        monkeypatch.delenv(var, raising=False)
    credentials = tmp_path / "broker.toml"
    credentials.write_text(BROKER_TOML.format(url="http://127.0.0.1:9", tenant=TENANT_UUID))
    uid = add_density(live.fake, MAKEABLE[2])
    state = tmp_path / "tenant"
    res = runner.invoke(app, ["run", "--broker", live.url, "--credentials", str(credentials),
                              "--out", str(state), "--json"])
    assert res.exit_code == 3, res.output + res.stderr
    (row,) = json.loads(res.stdout)["requests"]
    assert row["request"] == uid and row["failed"] is True and row["failures"] == 2
    assert row["state"] == "skipped" and live.fake.results == []
    gave_back = [m for (r, s, m) in live.fake.status_log if r == uid and s == "pending"]
    assert len(gave_back) == 2 and all(m.startswith("asab job failed") for m in gave_back)
    table = runner.invoke(app, ["journal", "--out", str(state)], terminal_width=200)
    assert table.exit_code == 0 and uid[:8] in table.stdout and "skipped" in table.stdout


def test_run_broker_refuses_a_jobs_file_too(tmp_path):
    res = runner.invoke(app, ["run", "--broker", "http://127.0.0.1:9", "--jobs",
                              str(tmp_path / "jobs.json"), "--out", str(tmp_path / "s")])
    assert res.exit_code == 1 and "exclude each other" in res.stderr


def test_run_broker_unreachable_is_exit_1(tmp_path, monkeypatch, quiet_signals):
    from asab.cli.main import main

    credentials = tmp_path / "broker.toml"  # one attempt, no backoff: fails at once
    credentials.write_text(BROKER_TOML.format(url="http://127.0.0.1:9", tenant=TENANT_UUID)
                           .replace("[tenant]", "max_attempts = 1\nbackoff_base = 0.0\n\n[tenant]"))
    monkeypatch.delenv("ASAB_BROKER_URL", raising=False)
    monkeypatch.setattr("sys.argv", ["asab", "run", "--broker", "http://127.0.0.1:9",
                                     "--credentials", str(credentials),
                                     "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1


def test_tenant_and_journal_help():
    res = runner.invoke(app, ["tenant", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for option in ("--broker", "--credentials", "--out", "--state", "--until-idle", "--poll",
                   "--max-failures", "--max-interruptions"):
        assert option in res.stdout
    assert "Example: asab tenant" in res.stdout
    missing = runner.invoke(app, ["journal", "--out", "/nonexistent/tenant"])
    assert missing.exit_code == 1 and "no journal" in missing.stderr


def test_unattended_tenant_starts_while_the_broker_is_down():
    """`asab tenant` (no --until-idle) starts with the broker unreachable, so results waiting in
    the journal go out once it answers; a one-shot run, or a refused tenant uuid, exits 1."""
    from asab.cli.cmd_tenant import _check_tenant
    from asab.errors import BrokerError

    class Down:
        def __init__(self, permanent: bool):
            self.permanent = permanent

        def check_tenant(self):
            raise BrokerError("cannot connect", status=None, permanent=self.permanent)

    _check_tenant(Down(permanent=False), strict=False)
    with pytest.raises(BrokerError):
        _check_tenant(Down(permanent=False), strict=True)
    with pytest.raises(BrokerError):
        _check_tenant(Down(permanent=True), strict=False)
