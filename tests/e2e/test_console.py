"""The web console in a real headless Chromium against the local platform (the shared e2e fixtures: one platform,
one training run): sign in with a key, upload a good and a bad file and see the bad line named, see the trained job's
loss curve drawn from its result file, deploy the base model, chat in the playground with tokens streaming, see usage
count the calls, and another tenant's job id give the API's 404 in the page. Screenshots: /tmp/console-*.png."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.core.models import now
from functions.local.runtime import Platform
from functions.store.mongo import get_store
from tests.e2e.zorbia import BASE
from tests.helpers.browser import chromium, console_errors, screenshot, waiter
from tests.helpers.datasets import chat_lines

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
CANVAS_INK = """
const c = document.querySelector('.chart canvas');
if (!c) return 0;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let ink = 0;
for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
return ink;
"""
WATCH_ANSWER = """
window.__lengths = [];
new MutationObserver(() => {
  const el = document.querySelector('.answer-text');
  if (el) window.__lengths.push(el.textContent.length);
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def _bad_file(folder: Path) -> Path:
    lines = chat_lines(12).decode().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "<img src=x onerror=alert(1)> no answer"}]})
    lines[5] = "not json \x1b[31m <script>alert(1)</script>" + "x" * 400
    path = folder / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _text(driver: Any, css: str) -> str:
    """The text of the first match, read in the page (an element re-rendered meanwhile cannot go stale)."""
    return str(driver.execute_script("return document.querySelector(arguments[0])?.innerText ?? ''", css))


def test_console_files_job_curve_deploy_playground_usage_and_tenancy(
    platform: Platform, zorbia_job: Any, tmp_path: Path, wait_for: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    if not (Path(__file__).resolve().parents[2] / "console" / "dist" / "index.html").is_file():
        pytest.fail("console/dist is not built: run `make install` (npm ci && npm run build in console/)")
    api = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.demo_key}"}, timeout=60)
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_lines(12))
    with chromium() as driver:
        wait = waiter(driver, 60)
        # Sign in: the key goes to session storage only, never into the URL
        driver.get(f"{platform.url}/console/")
        wait(lambda d: d.find_element(By.ID, "api-key")).send_keys(platform.demo_key)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(lambda d: "Files" in _text(d, "main h1"))
        assert platform.demo_key not in driver.current_url
        assert driver.execute_script("return sessionStorage.getItem('ministudio.apiKey')") == platform.demo_key

        # Files: a good file is processed; a bad one names its lines, the offending text shown as text, truncated
        driver.find_element(By.ID, "file-input").send_keys(str(good))
        wait(lambda d: "processed" in _text(d, ".report .badge"))
        good_id = driver.find_element(By.CSS_SELECTOR, ".report").get_attribute("data-file")
        # A large file goes straight to S3 with the Upload's presigned POST, then becomes a File like any other
        big = tmp_path / "big.jsonl"
        big.write_bytes(chat_lines(30000))
        assert big.stat().st_size >= 4 * 1024 * 1024
        driver.find_element(By.ID, "file-input").send_keys(str(big))
        report = f".report:not([data-file='{good_id}'])"
        wait(lambda d: "processed" in _text(d, report + " .badge"), 120)
        big_id = driver.find_element(By.CSS_SELECTOR, report).get_attribute("data-file")
        stored = get_store().datasets.get(big_id)
        assert stored is not None and stored.source == "upload" and stored.bytes == big.stat().st_size
        driver.find_element(By.ID, "file-input").send_keys(str(_bad_file(tmp_path)))
        has_lines = "tr.validation-error code.line"
        wait(lambda d: (found := d.find_elements(By.CSS_SELECTOR, has_lines)) and all(c.text for c in found))
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.validation-error")
        by_line = {r.find_element(By.CSS_SELECTOR, "td.num").text: r for r in rows}
        assert {"3", "6"} <= by_line.keys(), [r.text for r in rows]
        assert "<img src=x onerror=alert(1)>" in by_line["3"].find_element(By.CSS_SELECTOR, "code.line").text
        shown = by_line["6"].find_element(By.CSS_SELECTOR, "code.line").text
        assert shown.startswith("not json \\u001b[31m <script>") and shown.endswith("…") and len(shown) <= 161
        assert not driver.find_elements(By.CSS_SELECTOR, "tr.validation-error script, tr.validation-error img")
        screenshot(driver, "files")

        # The trained job: its loss curve drawn from the CSV result file
        driver.get(f"{platform.url}/console/#/jobs/{zorbia_job.id}")
        wait(lambda d: "succeeded" in _text(d, "#job-status"))
        wait(lambda d: "result file" in _text(d, "#curve-source"))
        points = int(driver.find_element(By.CSS_SELECTOR, ".chart").get_attribute("data-points"))
        csv = api.get(f"/v1/files/{zorbia_job.result_files[0]}/content").text
        assert points == len(csv.strip().splitlines()) - 1 >= 2
        assert wait(lambda d: d.execute_script(CANVAS_INK) > 500)
        screenshot(driver, "job")

        # Deploy the base model from the Models page and watch it become ready
        driver.get(f"{platform.url}/console/#/models")
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"#deploy-model option[value='{BASE}']"))
        Select(driver.find_element(By.ID, "deploy-model")).select_by_value(BASE)
        driver.find_element(By.CSS_SELECTOR, "#deploy button[type=submit]").click()
        wait(lambda d: "ready" in _text(d, "#deployments .badge"), 300)
        # and the fine-tuned model next to it (its adapter rides on the base model's server)
        tuned = zorbia_job.fine_tuned_model
        Select(driver.find_element(By.ID, "deploy-model")).select_by_value(tuned)
        driver.find_element(By.CSS_SELECTOR, "#deploy button[type=submit]").click()
        ready = "return [...document.querySelectorAll('#deployments .badge')].map(b => b.innerText)"
        wait(lambda d: d.execute_script(ready) == ["ready", "ready"], 300)
        screenshot(driver, "models")

        # Playground: the fine-tuned model against its base on the same prompt; the answers stream in (the text
        # grows over several updates), each with its time to first token and tokens/s
        driver.get(f"{platform.url}/console/#/playground")
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"#pg-model option[value='{tuned}']"))
        Select(driver.find_element(By.ID, "pg-model")).select_by_value(tuned)
        Select(driver.find_element(By.ID, "pg-compare")).select_by_value(BASE)
        driver.find_element(By.ID, "pg-prompt").send_keys("Count from one to ten in words.")
        max_tokens = driver.find_element(By.ID, "pg-max-tokens")
        max_tokens.clear()
        max_tokens.send_keys("24")
        driver.execute_script(WATCH_ANSWER)
        driver.find_element(By.CSS_SELECTOR, "#chat button[type=submit]").click()
        both = "return [...document.querySelectorAll('.stats-line')].length"
        wait(lambda d: d.execute_script(both) == 2, 180)
        assert _text(driver, "[data-pane='0'] h3") == tuned and _text(driver, "[data-pane='1'] h3") == BASE
        assert _text(driver, "[data-pane='0'] .answer-text").strip() and _text(driver, "[data-pane='1'] .answer-text")
        lengths = sorted(set(driver.execute_script("return window.__lengths")))
        assert len([n for n in lengths if n > 0]) >= 3, lengths  # arrived in pieces, not as one answer
        screenshot(driver, "playground")

        # Usage counts the call
        driver.get(f"{platform.url}/console/#/usage")
        wait(lambda d: _text(d, "#usage-total-requests").isdigit() and int(_text(d, "#usage-total-requests")) >= 2)
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".charts .chart"))
        screenshot(driver, "usage")

        # A narrow phone screen (emulated: a headless window cannot be narrower than 500 px): nothing wider than it
        phone = {"width": 360, "height": 1600, "deviceScaleFactor": 1, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
        driver.get(f"{platform.url}/console/#/jobs/{zorbia_job.id}")
        wait(lambda d: "succeeded" in _text(d, "#job-status") and d.execute_script(CANVAS_INK) > 200)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
        driver.save_screenshot("/tmp/console-job-360.png")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        assert not [e for e in console_errors(driver) if "Content Security Policy" in e]

        # The admin key sees tenants and their keys instead of a tenant's pages
        driver.execute_script("sessionStorage.setItem('ministudio.apiKey', arguments[0])", platform.admin_key)
        driver.get(f"{platform.url}/console/")
        driver.refresh()
        wait(lambda d: "Tenants" in _text(d, "main h1"))
        demo = wait(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, ".tenants button.link") if b.text == "demo"])
        demo[0].click()
        wait(lambda d: platform.demo_key[:8] in _text(d, ".tenants ul"))
        assert [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".top nav a")] == ["Tenants"]
        screenshot(driver, "tenants")

        # Another tenant's key: the same job id is the API's 404, shown in the page
        admin = {"Authorization": f"Bearer {platform.admin_key}"}
        code = f"other{now() % 100000}"
        assert api.post("/v1/tenants", headers=admin, json={"client_code": code}).status_code == 201
        other_key = api.post(f"/v1/tenants/{code}/api_keys", headers=admin, json={}).json()["key"]
        driver.execute_script("sessionStorage.setItem('ministudio.apiKey', arguments[0])", other_key)
        driver.get(f"{platform.url}/console/#/jobs/{zorbia_job.id}")
        driver.refresh()
        error = wait(lambda d: _text(d, ".error"))
        assert "Error 404" in error and zorbia_job.id in error
        screenshot(driver, "other-tenant")
    # Undeploy what this test deployed: the adapter first, then the base model's server
    for model in (zorbia_job.fine_tuned_model, BASE):
        for d in api.get("/v1/deployments").json()["data"]:
            if d["model"] == model and d["status"] not in ("deleting", "deleted"):
                api.delete(f"/v1/deployments/{d['id']}")
                gone = f"/v1/deployments/{d['id']}"
                wait_for(lambda path=gone: api.get(path).json()["status"] == "deleted", timeout=60)
