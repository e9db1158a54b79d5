"""The lineage explorer in headless Chromium, served by a real `lineage sink` (keys in Redis, audit on
Kafka) over a store holding the June 2024 scenario, a faceted ETL run and a 2,001-node neighbourhood.

An analyst signs in (HttpOnly session cookie, no key in the URL or page), searches a model with
the keyboard (arrow keys + Enter in the type-ahead list), opens its graph, clicks a dataset node
and reads its panel (versions, facets, column lineage), reaches the side panel with Tab, follows a
deep link to a prediction (analysts are offered no reports); an investigator gets the decrypt
action, which asks for a reason and calls the audited decrypt route, and downloads a prediction's
provenance report and a dataset's impact report, whose SHA-256 the audit log holds. The wide
neighbourhood loads and stays interactive; its load and render times are printed and written to
test-artifacts/explorer-2000-nodes.json, not asserted. Screenshots go to test-artifacts/explorer-*.png.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from helpers import api_token, free_port, wait_until
from integration.explorer_support import BULK, BULK_NODES, FACETED, HOSTILE
from integration.sink_support import REPO, deployment, env_for, run_cli, start_sink, stop_sink, wait_healthy
from integration.test_dashboard_browser import ARTIFACTS, _driver, _sign_in
from lineage.settings import Settings
from sinks import explorer

pytestmark = [pytest.mark.integration, pytest.mark.browser]

DATASET = "dataset:warehouse://dw/dw.customers"


@pytest.fixture(scope="module")
def site(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    if not explorer.BUNDLE.exists():
        pytest.fail("the explorer bundle is not built: run `make install` (npm ci && npm run build in sinks/explorer/web)")
    data_dir = tmp_path_factory.mktemp("explorer-site")
    settings = deployment(stack, data_dir, api_port=free_port())
    subprocess.run([sys.executable, "-m", "integration.explorer_support", str(data_dir / "clickhouse")], check=True,
                   cwd=REPO, env={**env_for(settings), "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}, timeout=300)
    log = data_dir / "sink.log"
    proc = start_sink(settings, log)
    try:
        wait_healthy(settings, proc, log, 90)
        yield settings
    finally:
        stop_sink(proc)


@pytest.fixture
def driver() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="chromium-")
    drv = _driver(profile)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def by_id(drv: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.ID, element_id)


def panel_ready(drv: Any, node_id: str) -> bool:
    panel = by_id(drv, "panel")
    return panel.get_attribute("data-node") == node_id and panel.get_attribute("data-state") == "ready"


def graph_ready(drv: Any) -> bool:
    return drv.execute_script("return document.body.dataset.graph") == "ready"


def click_node(drv: Any, node_id: str) -> None:
    """Click a node where cytoscape drew it, as a user would."""
    from selenium.webdriver.common.action_chains import ActionChains

    x, y, w, h = drv.execute_script(
        "const cy = lineageExplorer.cy, n = cy.getElementById(arguments[0]); cy.center(n);"
        "const p = n.renderedPosition(), c = cy.container();"
        "return [p.x, p.y, c.clientWidth, c.clientHeight];", node_id)
    ActionChains(drv).move_to_element_with_offset(by_id(drv, "graph"), int(x - w / 2), int(y - h / 2)).click().perform()


def sign_in(drv: Any, settings: Settings, role: str) -> str:
    token = api_token(settings, role)
    wait_until(lambda: by_id(drv, "signin").is_displayed(), 30, "the sign-in form")
    _sign_in(drv, token)
    wait_until(lambda: f"({role})" in by_id(drv, "whoami").text, 15, f"signed in as {role}")
    return token


def no_csp_violations(drv: Any) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if "Content Security Policy" in e["message"]]


def test_analyst_searches_a_model_reads_a_dataset_and_opens_a_prediction(site: Settings, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ARTIFACTS.mkdir(exist_ok=True)
    driver.get(f"{site.api_url}/explore")
    token = sign_in(driver, site, "analyst")
    (cookie,) = driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
    assert token not in driver.current_url and token not in driver.page_source
    assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0

    # Search a model with the keyboard: type, arrow down to the model, Enter.
    search = by_id(driver, "search")
    search.send_keys("fraud")
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#search-results li[data-node]")) >= 3, 15, "search results")
    kinds = [li.get_attribute("data-type") for li in driver.find_elements(By.CSS_SELECTOR, "#search-results li[data-node]")]
    assert "model" in kinds and "model_version" in kinds
    for _ in range(kinds.index("model") + 1):
        search.send_keys(Keys.ARROW_DOWN)
    active = search.get_attribute("aria-activedescendant")
    assert active and by_id(driver, active).get_attribute("data-node") == "model:fraud"
    assert "active" in by_id(driver, active).get_attribute("class")
    search.send_keys(Keys.ARROW_DOWN, Keys.ARROW_UP)  # down and back: the same item
    assert search.get_attribute("aria-activedescendant") == active
    search.send_keys(Keys.ENTER)
    wait_until(lambda: graph_ready(driver), 30, "the model's graph")
    assert driver.current_url.endswith("/explore?node=" + quote("model:fraud", safe=""))
    shown = set(driver.execute_script("return lineageExplorer.cy.nodes().map(n => n.id())"))
    assert {"model:fraud", "model_version:fraud@1", "model_version:fraud@2", "feature_set:customer_fs@1", DATASET} <= shown
    labels = driver.execute_script("return lineageExplorer.cy.edges().map(e => e.data('label'))")
    assert any(lbl.startswith("run ") and "2024-06-" in lbl for lbl in labels)  # edges name their run and time
    shapes = driver.execute_script(
        "const cy = lineageExplorer.cy; return [cy.getElementById('model:fraud').style('shape'),"
        "cy.getElementById(arguments[0]).style('shape')]", DATASET)
    assert shapes[0] != shapes[1]
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-model-graph.png"))

    # Select a dataset node in the drawing and read its panel.
    click_node(driver, DATASET)
    wait_until(lambda: panel_ready(driver, DATASET), 20, "the dataset's panel")
    panel = by_id(driver, "panel")
    text = panel.text
    assert "dw.customers" in text and "Versions over time (3)" in text and "Column lineage" in text
    assert [c.text for c in panel.find_elements(By.CSS_SELECTOR, "table")[1].find_elements(By.CSS_SELECTOR, "tbody td:first-child")] == ["w1", "w2", "w3"]
    assert "score" in text  # its column feeds dw.customer_scores.score
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-dataset-panel.png"))

    # Keyboard: Tab from the search field reaches the panel, then its first button; Enter uses it.
    search.click()
    for _ in range(40):
        search_or_other = driver.switch_to.active_element
        if search_or_other.get_attribute("id") == "panel":
            break
        search_or_other.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "panel"
    driver.switch_to.active_element.send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    assert focused.text == "Open as focus" and focused.get_attribute("data-node") == DATASET
    focused.send_keys(Keys.ENTER)
    wait_until(lambda: graph_ready(driver) and "node=" + quote(DATASET, safe="") in driver.current_url, 30, "the dataset as focus")

    # A faceted dataset: schema, tags and column lineage in the panel.
    faceted = "dataset:" + FACETED[0] + "/" + FACETED[1]
    driver.get(f"{site.api_url}/explore?node={quote(faceted, safe='')}")
    wait_until(lambda: panel_ready(driver, faceted), 30, "the faceted dataset's panel")
    facets = [h.get_attribute("data-facet") for h in driver.find_elements(By.CSS_SELECTOR, "#panel h3.facet")]
    assert {"schema", "tags", "columnLineage"} <= set(facets)
    assert "risk score 0..1" in by_id(driver, "panel").text and "IDENTITY" in by_id(driver, "columns").text

    # Depth 1, then expand the writing run's neighbours and collapse them again.
    depth = by_id(driver, "depth")
    depth.clear()
    depth.send_keys("1")
    by_id(driver, "apply").click()
    count = "return lineageExplorer.cy.nodes().length"
    wait_until(lambda: graph_ready(driver) and driver.execute_script(count) == 2, 30, "the depth-1 neighbourhood")
    writer = "run:" + str(uuid.UUID(int=77))
    click_node(driver, writer)
    wait_until(lambda: panel_ready(driver, writer), 20, "the run's panel")
    by_id(driver, "expand").click()
    wait_until(lambda: driver.execute_script(count) == 4 and by_id(driver, "expand").text == "Collapse", 20, "expanded")
    ids = set(driver.execute_script("return lineageExplorer.cy.nodes().map(n => n.id())"))
    assert {"job:etl/score_customers", DATASET} <= ids
    by_id(driver, "expand").click()
    wait_until(lambda: driver.execute_script(count) == 2 and by_id(driver, "expand").text == "Expand neighbours", 20,
               "collapsed")

    # Markup in names is shown as text, never run (search list, graph, panel).
    search = by_id(driver, "search")
    search.clear()
    search.send_keys("onerror")
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#search-results li[data-node]"), 15, "the hostile name found")
    assert HOSTILE[1][:30] in by_id(driver, "search-results").text
    search.send_keys(Keys.ENTER)
    hostile = f"dataset:{HOSTILE[0]}/{HOSTILE[1]}"
    wait_until(lambda: panel_ready(driver, hostile) and graph_ready(driver), 30, "the hostile dataset's panel")
    assert HOSTILE[1] in by_id(driver, "panel").text
    assert "<script>" in driver.execute_script("return lineageExplorer.cy.nodes().map(n => n.data('label')).join(' ')")
    assert driver.execute_script("return window.__pwned === undefined && !document.querySelector('#panel img, #search-results img')")

    # A deep link to a prediction: its chain, tier, snapshot status and the report downloads.
    driver.get(f"{site.api_url}/explore?node={quote('prediction:p1', safe='')}")
    wait_until(lambda: panel_ready(driver, "prediction:p1"), 30, "the prediction's panel")
    facts = by_id(driver, "prediction-facts").text
    assert "full" in facts and "regulated" in facts and "sealed" in facts and "subj-" not in facts
    assert "model_version:fraud@1" in by_id(driver, "prediction").text
    # Reports are for roles with the `reports` right (auditor, investigator): none offered here.
    assert not driver.find_elements(By.CSS_SELECTOR, "#prediction .download")
    assert not driver.find_elements(By.ID, "decrypt")  # analysts may not decrypt
    assert token not in driver.current_url
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-prediction.png"))
    assert no_csp_violations(driver) == []


def test_investigator_decrypt_asks_for_a_reason(site: Settings, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{site.api_url}/explore")
    sign_in(driver, site, "investigator")
    assert by_id(driver, "reason-label").is_displayed()
    by_id(driver, "reason").send_keys("case 17: appeal of p1")
    search = by_id(driver, "search")
    search.send_keys("p1")
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#search-results li[data-node='prediction:p1']"), 15, "p1 found")
    search.send_keys(Keys.ENTER)
    wait_until(lambda: panel_ready(driver, "prediction:p1"), 30, "the prediction's panel")
    assert "subj-20" in by_id(driver, "prediction-facts").text  # investigators read the pseudonym
    by_id(driver, "decrypt").click()
    reason = wait_until(lambda: driver.find_elements(By.ID, "decrypt-reason"), 10, "the reason field")[0]
    assert driver.switch_to.active_element == reason
    reason.send_keys(Keys.ENTER)
    wait_until(lambda: "a reason is required" in by_id(driver, "decrypt-out").text, 10, "refused without a reason")
    calls = "return performance.getEntriesByType('resource').filter(e => e.name.includes(':decrypt')).length"
    assert driver.execute_script(calls) == 0
    reason.send_keys("case 17: appeal of p1", Keys.ENTER)
    # The scenario's pointer names no stored snapshot: the route answers (audited) with its refusal.
    def answered() -> str | None:
        text = by_id(driver, "decrypt-out").text.strip()
        return text if "not a snapshot pointer" in text else None

    answer = wait_until(answered, 30, "the decrypt route's answer")
    assert driver.execute_script(calls) == 1
    assert "not a snapshot pointer" in answer and "\n" not in answer
    # The attempt is in the query audit log: who, the reason given, the pointer and the refusal.
    def logged() -> list[dict[str, Any]]:
        out = run_cli(site, "audit", "log", "--since", "1h", "--json").stdout
        return [e for e in json.loads(out) if e["action"] == "decrypt" and e["role"] == "investigator"]

    (entry,) = wait_until(logged, 60, "the decrypt attempt in the audit log", 0.5)
    assert entry["reason"] == "case 17: appeal of p1" and entry["what"] == "enc://snap/p1"
    assert entry["outcome"] != "ok"

    # The reports download from the panels, with the reason; each one's SHA-256 is audited.
    downloads = Path(tempfile.mkdtemp(prefix="explorer-downloads-"))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    def download(selector: str, kind: str) -> str:
        buttons = {b.get_attribute("data-format"): b for b in driver.find_elements(By.CSS_SELECTOR, selector)}
        assert set(buttons) == {"html", "pdf", "json"}
        buttons["html"].click()
        saved = wait_until(lambda: [p for p in downloads.glob(f"lineage-{kind}-*.html")], 60, f"the downloaded {kind} report")[0]
        digest = hashlib.sha256(saved.read_bytes()).hexdigest()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, f".report-out[data-sha256='{digest}']"), 10, "the saved note")

        def report_logged() -> list[dict[str, Any]]:
            out = run_cli(site, "audit", "log", "--since", "1h", "--json").stdout
            return [e for e in json.loads(out) if e["action"] == "report" and e["role"] == "investigator"
                    and e["what"] == kind and e.get("details", {}).get("sha256") == digest]

        (entry,) = wait_until(report_logged, 60, f"the {kind} report's SHA-256 in the audit log", 0.5)
        assert entry["reason"] == "case 17: appeal of p1"
        page = saved.read_text()
        assert "<script" not in page.lower()
        return page

    page = download("#prediction button.download[data-report='provenance']", "provenance")
    assert "p1" in page and "fraud" in page
    assert driver.find_elements(By.CSS_SELECTOR, "#prediction button.download[data-report='erasure']")  # the subject's
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-report-download.png"))
    driver.get(f"{site.api_url}/explore?node={quote(DATASET, safe='')}")
    wait_until(lambda: by_id(driver, "reason-label").is_displayed(), 30, "signed in again from the session cookie")
    by_id(driver, "reason").send_keys("case 17: appeal of p1", Keys.ENTER)
    wait_until(lambda: panel_ready(driver, DATASET), 30, "the dataset's panel")
    page = download("#panel button.download[data-report='impact']", "impact")
    assert "dw.customers" in page
    shutil.rmtree(downloads, ignore_errors=True)
    assert no_csp_violations(driver) == []


def test_a_2000_node_neighbourhood_renders_and_stays_interactive(site: Settings, driver: Any) -> None:
    node = f"dataset:{BULK[0]}/{BULK[1]}"
    driver.get(f"{site.api_url}/explore")
    sign_in(driver, site, "analyst")
    driver.get(f"{site.api_url}/explore?node={quote(node, safe='')}")
    wait_until(lambda: graph_ready(driver), 180, "the wide neighbourhood", 0.5)
    timings = driver.execute_script("return lineageExplorer.timings")
    print(f"\nexplorer: {timings['nodes']} nodes, {timings['edges']} edges: load (fetch) {timings['fetch_ms']} ms, "
          f"layout + first render {timings['render_ms']} ms", flush=True)
    (ARTIFACTS / "explorer-2000-nodes.json").write_text(json.dumps(timings, indent=1) + "\n")  # kept with the screenshots
    assert timings["nodes"] == BULK_NODES and not timings["grouped"]
    assert driver.execute_script("return lineageExplorer.cy.nodes().length") == BULK_NODES
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-2000-nodes.png"))
    # Still interactive: zoom in, click a node, its panel answers.
    driver.execute_script("lineageExplorer.cy.zoom(1.2)")
    target = f"dataset:{BULK[0]}/derived_0500"
    click_node(driver, target)
    wait_until(lambda: panel_ready(driver, target), 30, "a panel in the wide graph")
    assert "derived_0500" in by_id(driver, "panel").text

    # A lower node cap: the same neighbourhood grouped by type and namespace, with counts.
    cap = by_id(driver, "cap")
    cap.clear()
    cap.send_keys("100")
    by_id(driver, "apply").click()
    wait_until(lambda: graph_ready(driver) and driver.execute_script("return lineageExplorer.timings.grouped"), 60,
               "the grouped view")
    groups = driver.execute_script(
        "return lineageExplorer.cy.nodes('.group').map(n => [n.id(), n.data('raw').count])")
    assert dict(groups) == {"group:run|bulk": 1000, f"group:dataset|{BULK[0]}": 1000}
    assert "grouped by type and namespace" in by_id(driver, "graph-status").text
    click_node(driver, "group:run|bulk")
    wait_until(lambda: panel_ready(driver, "group:run|bulk") and "1000 nodes" in by_id(driver, "panel").text, 20,
               "a group's panel")
    assert driver.save_screenshot(str(ARTIFACTS / "explorer-grouped.png"))
    assert no_csp_violations(driver) == []


def test_investigator_decrypts_a_sealed_snapshot_from_a_deep_link(stack: Any, tmp_path: Path) -> None:
    """The whole path: an inference event through the worker (snapshot sealed into the encrypted
    store), the sink serving the explorer, the key holder opening the snapshot for the decrypt
    route; the investigator follows a deep link, states a reason and reads the plaintext."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from factories import inference_event
    from integration.alerts_support import http_json, start_pipeline
    from integration.worker_support import encode_many, produce_all

    for pipe in start_pipeline(stack, tmp_path):
        s = pipe.settings
        pid, secret = f"xp-{uuid.uuid4().hex[:8]}", f"VAL{uuid.uuid4().hex[:8]}"
        event = inference_event(pid, subject_id=f"subj-{pid}", snapshot={"income": secret}, risk=0.95)
        produce_all(s, [(s.topics.inference, pid.encode(), encode_many(s, "inference", [event])[0], None)])

        def sealed() -> str:
            body = http_json(s, f"{explorer.API}/prediction?id={pid}")
            return str(body["snapshot"]["pointer"]) if body.get("found") else ""

        pointer = wait_until(sealed, 120, f"the prediction's sealed snapshot\n{pipe.logs()}", 0.5)
        profile = tempfile.mkdtemp(prefix="chromium-")
        drv = _driver(profile)
        try:
            drv.get(f"{s.api_url}/explore?node={quote('prediction:' + pid, safe='')}")
            sign_in(drv, s, "investigator")
            # a role that must state a reason is asked for one before anything loads
            wait_until(lambda: drv.switch_to.active_element.get_attribute("id") == "reason", 10, "the reason field focused")
            assert "state a reason" in by_id(drv, "graph-status").text and by_id(drv, "panel").get_attribute("data-node") is None
            drv.switch_to.active_element.send_keys("case 42: customer appeal", Keys.ENTER)
            wait_until(lambda: panel_ready(drv, "prediction:" + pid), 30, "the prediction's panel")
            assert "consequential" in by_id(drv, "prediction-facts").text and "sealed" in by_id(drv, "prediction-facts").text
            assert secret not in drv.page_source  # nothing in the clear until asked
            by_id(drv, "decrypt").click()
            reason = wait_until(lambda: drv.find_elements(By.ID, "decrypt-reason"), 10, "the reason field")[0]
            reason.send_keys("case 42: customer appeal", Keys.ENTER)
            plain = wait_until(lambda: drv.find_elements(By.ID, "snapshot-plain"), 60, f"the plaintext\n{pipe.logs()}")[0]
            assert secret in plain.text
            assert drv.save_screenshot(str(ARTIFACTS / "explorer-decrypt.png"))
            assert secret not in drv.current_url and no_csp_violations(drv) == []
        finally:
            drv.quit()
            shutil.rmtree(profile, ignore_errors=True)

        def logged() -> list[dict[str, Any]]:
            out = run_cli(s, "audit", "log", "--action", "decrypt", "--since", "1h", "--json").stdout
            return [e for e in json.loads(out) if e["what"] == pointer and e["outcome"] == "ok"]

        (entry,) = wait_until(logged, 60, "the decrypt in the audit log", 0.5)
        assert entry["role"] == "investigator" and entry["reason"] == "case 42: customer appeal"
        assert secret not in json.dumps(entry)
