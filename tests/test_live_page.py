"""The live bench page in a real browser: headless Chromium driven by Selenium against
``asab serve`` (a separate process, simulated bench at ×20 real time).

The page loads without console errors, draws the bench, follows a simulated job as it runs
(pumps shown moving, the current job's step), and its e-stop button stops the pumps: the
pumps server reports every pump stopped, and later motion is refused (409).

Skipped with the reason when Chromium, chromedriver or selenium is missing (``.ci/run``
installs them). No browser is downloaded: the binaries are given by path and
selenium-manager is kept offline (``SE_OFFLINE=1``). Screenshots go to the temporary folder
of the test, never into the repository.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests._serve_process import Serve, free_base_port
from tests._servers_support import MAKEABLE, TOKEN

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = os.environ.get("ASAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ASAB_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,1800")
"""The machine has no network: without these Chromium floods refused connections."""


def chrome(user_data: Path):
    """A headless Chromium with its console log readable (``goog:loggingPrefs``), or skip."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    if missing:
        pytest.skip(f"no browser for the live page tests: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver; .ci/run does)")
    os.environ["SE_OFFLINE"] = "1"  # selenium-manager must not look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("live")
    driver = chrome(work / "chromium-profile")  # skips before a server is started
    serve = Serve(work, free_base_port(), speed=20.0)
    try:
        serve.start()
        yield serve, driver, work
    finally:
        driver.quit()
        serve.stop()


def errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def attr(driver, css: str, name: str) -> str | None:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    try:
        return driver.find_element("css selector", css).get_attribute(name)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def test_page_loads_without_console_errors_and_shows_the_bench(bench):
    serve, driver, work = bench
    driver.get(f"{serve.actions}/?token={TOKEN}")
    assert driver.current_url == f"{serve.actions}/"  # the token left the address bar
    wait(lambda: attr(driver, "body", "data-updates") not in (None, "0"), 15, "first snapshot")
    assert attr(driver, "#conn", "data-state") == "live"
    tubes = driver.find_elements("css selector", "#bench-svg line.tube")
    assert len(tubes) > 50
    assert all(t.get_attribute("data-liquid") for t in tubes[:20])  # every line says what fills it
    assert len(driver.find_elements("css selector", "#bench-svg line.channel.active")) >= 10
    assert len(driver.find_elements("css selector", "#pumps tr[data-pump]")) == 6
    assert driver.find_element("css selector", "tr[data-vessel='Solvent']").text.startswith("Solvent")
    assert "not latched" in driver.find_element("id", "estop-state").text
    driver.save_screenshot(str(work / "live-loaded.png"))
    assert errors(driver) == []
    # without the token (a new browser session, no cookie) the page is not served
    driver.delete_all_cookies()
    driver.get(f"{serve.actions}/")
    assert "missing or wrong bearer token" in driver.page_source
    driver.get_log("browser")  # that 401 is the point here, not a page error
    driver.get(f"{serve.actions}/?token={TOKEN}")


def test_page_follows_a_running_job(bench):
    serve, driver, work = bench
    driver.get(f"{serve.actions}/?token={TOKEN}")
    wait(lambda: attr(driver, "body", "data-updates") not in (None, "0"), 15, "first snapshot")
    job = serve.post(f"{serve.actions}/deliver", {"composition": MAKEABLE}).json()
    assert job["state"] == "running", job
    wait(lambda: attr(driver, "#current-job", "data-job") == job["id"], 10, "job shown as current")
    wait(lambda: attr(driver, "#pumps tr[data-pumping='true']", "data-pump"), 30,
         "a pump shown moving")
    text = driver.find_element("id", "current-job").text
    assert text.startswith("deliver — step ") and "%" in text
    wait(lambda: any(t.get_attribute("data-liquid") not in ("gas", "")
                     for t in driver.find_elements("css selector", "#bench-svg line.tube")),
         30, "a line shown filled with liquid")
    done = serve.wait_job(job["id"], timeout=180)
    assert done["state"] == "succeeded", done["error"]
    wait(lambda: attr(driver, f"#history tr[data-job='{job['id']}']", "data-state") == "succeeded",
         10, "the job in the history")
    measured = serve.wait_job(serve.post(f"{serve.actions}/measure",
                                         {"sample": "live_1"}).json()["id"], timeout=180)
    assert measured["state"] == "succeeded"
    row = wait(lambda: driver.find_elements("css selector", f"#results tr[data-job='{measured['id']}']"),
               10, "the measured sample in the results table")
    assert "live_1" in row[0].text and "EC 0.290" in row[0].text and "1.16" in row[0].text
    assert errors(driver) == []


def test_estop_button_stops_the_pumps_and_motion_is_refused(bench):
    serve, driver, work = bench
    driver.get(f"{serve.actions}/?token={TOKEN}")
    wait(lambda: attr(driver, "body", "data-updates") not in (None, "0"), 15, "first snapshot")
    job = serve.post(f"{serve.actions}/clean").json()
    assert job["state"] == "running", job

    def moving():
        return [p for p in serve.get(f"{serve.pumps}/pumps").json() if p["pumping"]]
    wait(moving, 30, "a pump moving")
    driver.find_element("id", "estop-button").click()
    wait(lambda: attr(driver, "#safety", "data-estop") == "true", 5, "the page shows the e-stop")
    assert "e-stop button on the live page" in driver.find_element("id", "estop-state").text
    assert moving() == []
    assert serve.wait_job(job["id"], timeout=30)["state"] == "cancelled"
    fills = {p["name"]: p["fill_level"] for p in serve.get(f"{serve.pumps}/pumps").json()}
    refused = serve.post(f"{serve.pumps}/pumps/F0.0/aspirate", {"source": "Solvent", "volume": 0.1})
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "EmergencyStopped"
    assert serve.post(f"{serve.actions}/prime").status_code == 409
    time.sleep(1.0)
    assert moving() == []
    assert {p["name"]: p["fill_level"] for p in serve.get(f"{serve.pumps}/pumps").json()} == fills
    wait(lambda: attr(driver, "#pumps tr[data-pumping='true']", "data-pump") is None, 5,
         "the page shows every pump stopped")
    driver.save_screenshot(str(work / "live-estop.png"))
    assert errors(driver) == []
