"""The SRE dashboard in headless Chromium while traffic flows: the lag chart and the alert list
show the live values once signed in with an analyst key (an HttpOnly, SameSite=Strict session
cookie the page cannot read). Before that the page shows a sign-in form, no data, and requests
none; a wrong key and a key whose role may not read the dashboard are refused; after signing out,
or once the key is revoked, the page empties and returns to the form. A screenshot is saved to
test-artifacts/dashboard.png."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from helpers import api_token, wait_until
from integration.alerts_support import http_json, start_pipeline
from factories import inference_event
from integration.worker_support import encode_many, produce_all
from lineage.keyspace import KeySpace
from sinks.access.keys import ApiKeys

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
POLL_S = 2.0  # the page's polling interval (dashboard.js POLL_MS)


#: Resource entries (performance API) for every data request the page made: anything under
#: /api/ or /metrics except the session route itself.
DATA_REQUESTS = """return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
    .filter(p => (p.startsWith('/api/') || p.startsWith('/metrics')) && p !== '/api/session')"""


def _driver(profile: str):  # type: ignore[no-untyped-def]
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("chromium/chromedriver missing: run deploy/install-browser.sh (Debian chromium + chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1400,1100"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _sign_in(driver, token: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "signin-token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()


def _shows_no_data(driver) -> bool:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return (driver.find_element(By.ID, "signin").is_displayed() and not driver.find_element(By.ID, "panels").is_displayed()
            and not driver.find_elements(By.CSS_SELECTOR, "#lag-legend li, #alerts-active li, #alerts-recent li, #lag-chart path")
            and driver.find_element(By.ID, "whoami").text == "" and not driver.find_element(By.ID, "signout").is_displayed())


def test_dashboard_shows_live_lag_and_alerts(stack, tmp_path: Path) -> None:
    for pipe in start_pipeline(stack, tmp_path, lag_threshold=300, lag_window_s=2, sample_interval_s=1,
                               window_s=10, eval_interval_s=1, dlq_rate_threshold=1e9):
        s = pipe.settings
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                events = [inference_event(model="dash", version="1") for _ in range(200)]
                produce_all(s, [(s.topics.inference, uuid.uuid4().hex.encode(), r, None)
                                for r in encode_many(s, "inference", events)])
                stop.wait(0.5)

        feeder = threading.Thread(target=traffic, daemon=True)
        feeder.start()
        profile = tempfile.mkdtemp(prefix="chromium-")
        driver = None
        try:
            wait_until(lambda: any(x["labels"]["group"] == s.app_id for x in http_json(s, "/api/dashboard/data")["lag"]),
                       120, f"worker lag samples\n{pipe.logs()}", 1.0)
            pipe.worker.signal(signal.SIGSTOP)  # lag builds up past the threshold: an alert fires
            data = wait_until(lambda: (lambda d: d if any(a["name"] == "ConsumerLagHigh" for a in d["alerts"]["active"]) else None)(
                http_json(s, "/api/dashboard/data")), 60, f"a lag alert\n{pipe.logs()}", 1.0)
            driver = _driver(profile)
            driver.get(f"{s.api_url}/dashboard")
            from selenium.webdriver.common.by import By

            # Not signed in: the sign-in form, no data on the page, and no data request made, even
            # after more than one polling interval.
            wait_until(lambda: _shows_no_data(driver), 30, "the sign-in form and no data")
            time.sleep(POLL_S * 1.5)
            assert _shows_no_data(driver)
            sessions = driver.execute_script(
                "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/session')).length")
            assert sessions == 1 and driver.execute_script(DATA_REQUESTS) == []  # it asked who it is, nothing more
            assert driver.find_element(By.ID, "signin-token").get_attribute("type") == "password"

            _sign_in(driver, "lk_wrong")
            wait_until(lambda: "not valid" in driver.find_element(By.ID, "signin-error").text, 10, "a refused sign-in")
            assert not driver.get_cookies() and _shows_no_data(driver) and driver.execute_script(DATA_REQUESTS) == []

            # A valid key whose role may not read the dashboard: a one-line refusal, its session ended.
            _sign_in(driver, api_token(s, "emitter"))
            wait_until(lambda: "(emitter) may not read the dashboard" in driver.find_element(By.ID, "signin-error").text,
                       10, "the refusal of an emitter key")
            assert _shows_no_data(driver) and not driver.get_cookies()

            # Sign in with an analyst key: an HttpOnly, SameSite=Strict session cookie the page cannot read.
            token = api_token(s, "analyst")
            _sign_in(driver, token)
            wait_until(lambda: "(analyst)" in driver.find_element(By.ID, "whoami").text, 10, "the signed-in key's name")
            assert driver.find_element(By.ID, "signout").is_displayed() and not driver.find_element(By.ID, "signin").is_displayed()
            (cookie,) = driver.get_cookies()
            assert cookie["name"] == "lineage_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert token not in cookie["value"] and "lineage_session" not in driver.execute_script("return document.cookie")
            assert driver.find_element(By.ID, "signin-token").get_attribute("value") == ""
            assert token not in driver.current_url and token not in driver.page_source
            assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0

            def page_shows_live_values() -> bool:
                d = http_json(s, "/api/dashboard/data")
                live = {f"{x['labels']['group']} {x['labels']['topic']}[{x['labels']['partition']}]": x["points"][-1][1]
                        for x in d["lag"] if x["points"]}
                items = driver.find_elements(By.CSS_SELECTOR, "#lag-legend li")
                shown = {li.get_attribute("data-name"): float(li.get_attribute("data-value") or "nan") for li in items}
                paths = driver.find_elements(By.CSS_SELECTOR, "#lag-chart path.line")
                alerts = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#alerts-active li")]
                close = all(abs(shown.get(k, -1) - v) <= max(50, 0.2 * v) for k, v in live.items() if v > 300)
                return bool(paths) and close and any("ConsumerLagHigh" in a and s.topics.inference in a for a in alerts)

            wait_until(page_shows_live_values, 30, "dashboard to show the live lag and the alert", 1.0)
            max_lag = float(driver.find_element(By.ID, "lag-chart").get_attribute("data-max-lag"))
            assert max_lag > 300
            assert int(driver.find_element(By.ID, "alert-count").text) >= 1
            # The PII panel: every event was sealed at the source, so none arrived unsealed.
            pii = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#pii li")]
            assert any(t.startswith("inference events accepted: ") and t != "inference events accepted: 0" for t in pii), pii
            assert "arrived unsealed, refused: 0" in pii, pii
            ARTIFACTS.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
            # Offline: every script/style the page loads comes from this server, and its policy says so.
            srcs = [e.get_attribute("src") or e.get_attribute("href") for e in
                    driver.find_elements(By.CSS_SELECTOR, "script[src], link[href]")]
            assert srcs and all(u.startswith(s.api_url) for u in srcs)
            policy = driver.execute_script(
                "return fetch('/dashboard').then(r => r.headers.get('content-security-policy'))")
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
            assert data["thresholds"]["lag"] == 300

            # Signing out ends the session: the panels empty and the cookie is no longer accepted.
            driver.find_element(By.ID, "signout").click()
            wait_until(lambda: _shows_no_data(driver), 10, "the form and no data after signing out")
            assert not driver.get_cookies()
            status = driver.execute_script(
                "return fetch('/api/dashboard/data', {credentials: 'same-origin'}).then(r => r.status)")
            assert status == 401

            # A session whose key is revoked meanwhile: the next poll gets 401 and the page empties.
            client = redis.Redis.from_url(s.redis_url)
            try:
                keys = ApiKeys(client, KeySpace.of(s))
                temporary, info = keys.create(f"dash-{uuid.uuid4().hex[:6]}", "analyst")
                _sign_in(driver, temporary)
                wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#lag-legend li"), 10, "data for the second key")
                keys.revoke(info.name)
            finally:
                client.close()
            wait_until(lambda: _shows_no_data(driver) and "session ended" in driver.find_element(By.ID, "signin-error").text,
                       10, "the form after the key was revoked")
            time.sleep(POLL_S * 1.5)  # polling stopped: the page stays empty
            assert _shows_no_data(driver)
            violations = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
            assert violations == []
        finally:
            stop.set()
            pipe.worker.signal(signal.SIGCONT)
            if driver is not None:
                driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
            feeder.join(10)
