"""``asab serve`` keeps its work (records, raw exports, jobs across a restart) and the live
page's authentication and read-only endpoints during a job.

The restart tests run ``asab serve`` as a separate process (simulated bench, real sockets):
a job run through the HTTP API is listed again, with its record, by the next server on the
same ``--out``; a job running when the server is SIGKILLed comes back ``interrupted``."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from asab.servers.history import JobHistory
from asab.servers.live import cookie_name
from tests._serve_process import Serve, free_base_port
from tests._servers_support import AUTH, MAKEABLE, TOKEN, served_bench

pytestmark = pytest.mark.e2e


def test_jobs_records_and_raw_files_survive_a_restart(tmp_path):
    serve = Serve(tmp_path, free_base_port(), speed=50.0).start()
    try:
        delivered = serve.post(f"{serve.actions}/deliver", {"composition": MAKEABLE}).json()
        done = serve.wait_job(delivered["id"])
        assert done["state"] == "succeeded", done["error"]
        measured = serve.wait_job(serve.post(f"{serve.actions}/measure",
                                             {"sample": "hist_1"}).json()["id"])
        assert measured["state"] == "succeeded", measured["error"]
        assert measured["record"] and Path(measured["record"]).is_file()
        assert [Path(p).parent.name for p in measured["raw"]] == ["raw"]
    finally:
        serve.stop()
    # a new server on the same folder lists both jobs with their records
    again = Serve(tmp_path, free_base_port(), speed=50.0).start()
    try:
        jobs = {j["id"]: j for j in again.get(f"{again.actions}/jobs").json()}
        assert {delivered["id"], measured["id"]} <= set(jobs)
        for job_id in (delivered["id"], measured["id"]):
            job = jobs[job_id]
            assert job["state"] == "succeeded"
            record = json.loads(Path(job["record"]).read_text())
            assert record["job"]["id"] == job_id and record["bench"] == "hiu_2023"
            # the record keeps its paths relative to the serve folder
            assert record["job"]["record"] == f"records/{Path(job['record']).name}"
            assert all(p.startswith("raw/") for p in record["job"]["raw"])
        raw = Path(jobs[measured["id"]]["raw"][0])
        assert raw.is_file() and raw.stat().st_size > 0
        assert jobs[measured["id"]]["result"]["density"]["mean"] == pytest.approx(1.164, abs=0.01)
        rows = again.get(f"{again.actions}/live/state").json()["results"]
        assert rows[0]["job"] == measured["id"]
        assert rows[0]["composition"]["EC"] == pytest.approx(0.29, abs=0.01)
    finally:
        again.stop()
    assert sorted(p.name.split("_", 1)[1] for p in (tmp_path / "serve" / "records").glob("*.json")) \
        == [f"deliver_{delivered['id'][:8]}.json", f"measure_{measured['id'][:8]}.json"]
    # the serve folder is a results folder too: the measurement is a row, the delivery not
    from asab.results.table import collect

    table = collect([tmp_path / "serve"])
    assert [r.job_id for r in table.rows] == [measured["id"]]
    row = table.rows[0]
    assert row.status == "succeeded" and row.request_id == ""
    assert row.density_mean == pytest.approx(measured["result"]["density"]["mean"])
    assert row.density_n == 3 and row.temperature == pytest.approx(298.15, abs=0.1)
    assert row.composition("predicted")["EC"] == pytest.approx(0.29, abs=0.01)
    assert "1 deliver" in table.skipped[0]


def test_a_job_running_when_the_server_dies_comes_back_interrupted(tmp_path):
    serve = Serve(tmp_path, free_base_port(), speed=5.0).start()
    try:
        job = serve.post(f"{serve.actions}/deliver", {"composition": MAKEABLE}).json()
        serve.wait_job(job["id"], timeout=60, until=lambda j: j["step"] in ("mix", "deliver"))
        assert Path(job["record"]).is_file()
    finally:
        serve.stop(signal.SIGKILL)
    again = Serve(tmp_path, free_base_port(), speed=5.0).start()
    try:
        listed = again.get(f"{again.actions}/jobs/{job['id']}").json()
        assert listed["state"] == "interrupted"
        assert listed["error"]["type"] == "Interrupted"
        assert listed["record"] == job["record"]
        assert json.loads(Path(job["record"]).read_text())["job"]["state"] == "interrupted"
        assert again.get(f"{again.actions}/status").json()["busy"] == {}
    finally:
        again.stop()


def test_history_numbers_records_after_earlier_ones_and_skips_unreadable(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "0007_clean_deadbeef.json").write_text("{not json")
    history = JobHistory(tmp_path, "hiu_2023")
    assert history.load() == []
    from asab.servers.jobs import JobInfo

    info = JobInfo(id="ab" * 16, kind="prime", state="running", resources=[], created="t")
    assert history.path_for(info).name == f"0008_prime_{'ab' * 4}.json"


def test_a_second_server_cannot_take_a_folder_in_use(tmp_path):
    """A second asab serve on the same --out would mark the first one's running jobs
    interrupted and share its record numbers: it is refused while the first holds it."""
    from asab.servers.history import FolderInUse

    first = JobHistory(tmp_path, "hiu_2023")
    with pytest.raises(FolderInUse, match="another --out"):
        JobHistory(tmp_path, "hiu_2023")
    first._hold.close()  # the first server stops
    JobHistory(tmp_path, "hiu_2023")


# ---------------------------------------------------------------- in process: page auth, reads
@pytest.fixture(scope="module")
def served():
    with served_bench(speed=0.0) as (ctx, apps):
        yield ctx, apps


def test_page_needs_the_token_once_then_a_strict_httponly_cookie(served):
    ctx, apps = served
    browser = TestClient(apps["actions"], base_url="http://127.0.0.1")
    assert browser.get("/").status_code == 401
    assert browser.get("/?token=wrong-token-xx").status_code == 401
    assert browser.get("/live/state").status_code == 401
    first = browser.get(f"/?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == cookie_name(80) and "HttpOnly" in cookie  # one cookie per server port
    assert "samesite=strict" in cookie.lower() and TOKEN not in cookie
    browser.cookies.set(name, value)
    page = browser.get("/")
    assert page.status_code == 200 and 'src="/live/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no other host
    for path in ("/live/app.js", "/live/style.css"):
        asset = browser.get(path)
        assert asset.status_code == 200 and "https://" not in asset.text, path
    assert browser.get("/live/state").json()["bench"] == "hiu_2023"
    # acting on the cookie needs the page's header (a page of another origin cannot add it)
    assert browser.post("/estop", json={"reason": "x"}).status_code == 401
    other = TestClient(apps["pumps"], base_url="http://127.0.0.1", cookies=browser.cookies)
    assert other.get("/pumps").status_code == 401  # the cookie only opens the actions server
    # with the header the cookie opens the e-stop, and nothing else that acts
    page_header = {"X-Asab-Page": "1"}
    assert browser.post("/formulate", json={"composition": {"EC": 1.0}},
                        headers=page_header).status_code == 401
    assert browser.post("/estop/reset", headers=page_header).status_code == 401
    stopped = browser.post("/estop", json={"reason": "page"}, headers=page_header)
    assert stopped.status_code == 200 and stopped.json()["estop"] == "page"
    assert TestClient(apps["actions"], headers=AUTH).post("/estop/reset").json()["estop"] is None


def test_reads_answer_during_a_job_and_tare_does_not(served):
    ctx, apps = served
    a, b, p = (TestClient(apps[n], headers=AUTH) for n in ("actions", "balance", "pumps"))
    gate = __import__("threading").Event()
    job = ctx.jobs.submit("hold", lambda job: gate.wait(30), resources=("pumps", "valves",
                                                                          "balance"))
    try:
        reading = b.get("/balance/reading", params={"stable": "false"})
        assert reading.status_code == 200 and reading.json()["unit"] == "g"
        assert b.get("/balance/reading", params={"stable": "true"}).status_code == 409
        assert b.post("/balance/tare").status_code == 409
        assert p.get("/pumps").status_code == 200 and p.get("/pumps/A0.0").status_code == 200
        assert p.post("/valves/V1/position", json={"position": 1}).status_code == 409
        state = a.get("/live/state").json()
        assert [j["id"] for j in state["running"]] == [job.id]
    finally:
        gate.set()
    deadline = time.monotonic() + 10
    while ctx.jobs.get(job.id).state == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.get("/balance/reading", params={"stable": "true"}).status_code == 200


def test_a_line_is_shown_as_its_liquid_or_as_a_mixture():
    from asab.servers.live import MIXTURE, line_liquid

    assert line_liquid("gas", {"gas": 1.0, "EC-EMC": 0.2}) == "gas"
    assert line_liquid("EC-EMC", {"EC-EMC": 0.95, "solvent": 0.05}) == "EC-EMC"
    assert line_liquid("EC-EMC", {"EC-EMC": 0.5, "1.5M-LiPF6-EMC": 0.4, "gas": 0.1}) == MIXTURE
    assert line_liquid("solvent", {"solvent": 1.0}) == "solvent"


def test_event_stream_sends_snapshots_and_ends_when_the_server_stops(tmp_path):
    import httpx

    from tests._serve_process import AUTH as HEADERS

    serve = Serve(tmp_path, free_base_port(), speed=20.0).start()
    try:
        with httpx.stream("GET", f"{serve.actions}/live/events", headers=HEADERS,
                          timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            events = []
            for line in lines:
                if line.startswith("event: "):
                    events.append(line[7:])
                if line.startswith("data: ") and events[-1:] == ["state"]:
                    assert json.loads(line[6:])["bench"] == "hiu_2023"
                    break
            job = serve.post(f"{serve.actions}/prime", {"pumps": ["F0.0"]}).json()
            for line in lines:  # the job's start is sent at once, not after a poll cycle
                if line.startswith("data: ") and job["id"] in line:
                    break
            t0 = time.monotonic()
            serve.proc.send_signal(signal.SIGTERM)
            rest = list(lines)  # the stream ends (the server closes it) ...
            assert time.monotonic() - t0 < 2, rest  # measured 0.5 s; 5 s is uvicorn's cut
        serve.proc.wait(10)  # ... and the process exits
        assert time.monotonic() - t0 < 10
    finally:
        serve.stop()
