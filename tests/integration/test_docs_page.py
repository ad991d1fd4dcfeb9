"""/api/v1/docs in a real headless browser (Debian's chromium through chromedriver; scripts/test
installs both): Swagger UI loads from this server alone, takes the API key in Authorize, and its
"try it out" submits a job that a real worker then transcribes."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from audiojobs.api.app import create_app
from tests.conftest import API_KEY, AUTH, _redis_dbs, normalise, wait_for_job
from tests.integration.conftest import Stack, build_stack
from tests.services import RedisServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (scripts/test installs them)")


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory, test_redis: RedisServer) -> Iterator[tuple[Stack, str]]:
    """A stack with a worker, and its API served over HTTP on a free port of 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("docs")
    with build_stack("sqlite", tmp, test_redis.url(next(_redis_dbs) % 15 + 1), None) as stack:
        server = make_server("127.0.0.1", 0, create_app(stack.settings), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        worker = stack.start_worker()
        try:
            yield stack, f"http://127.0.0.1:{server.server_port}"
        finally:
            worker.stop()
            server.shutdown()
            thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _click(driver: WebDriver, css: str, within: object | None = None) -> None:
    wait = WebDriverWait(driver, 30)
    element = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, css)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def test_submit_a_job_from_the_docs_page(docs_stack: tuple[Stack, str], browser: WebDriver) -> None:
    stack, base = docs_stack
    wait = WebDriverWait(browser, 60)
    browser.get(f"{base}/api/v1/docs")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    # Operations in reading order: submit is the first one on the page.
    first = browser.find_elements(By.CSS_SELECTOR, ".opblock")[0]
    assert first.get_attribute("id") == "operations-jobs-submit"
    assert "/api/v1/audio/jobs/submit" in first.text

    # Authorize with the API key (the first scheme, X-API-KEY).
    _click(browser, "button.authorize")
    key_input = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".auth-container input")))
    key_input.send_keys(API_KEY)
    _click(browser, ".auth-container .auth-btn-wrapper button.authorize")
    _click(browser, "button.btn-done")

    # Open submit; "try it out" is on, so the JSON body is editable at once.
    _click(browser, "#operations-jobs-submit .opblock-summary")
    body = wait.until(ready.visibility_of_element_located(
        (By.CSS_SELECTOR, "#operations-jobs-submit textarea.body-param__text")))
    body.clear()
    body.send_keys(json.dumps({"local_path": str(stack.media_root / "jfk.flac")}))
    _click(browser, "#operations-jobs-submit button.execute")

    live = "#operations-jobs-submit .live-responses-table tr.response"
    status = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, f"{live} .response-col_status")))
    assert status.text.strip().startswith("202"), status.text
    job = json.loads(browser.find_element(By.CSS_SELECTOR, f"{live} .response-col_description pre").text)
    assert job["status"] == "queued"

    # The job is real: the worker transcribes it, and the caller's key reads it.
    done = wait_for_job(stack.client, job["id"], timeout=180)
    assert done["status"] == "completed", done
    result = stack.client.get(f"/api/v1/audio/jobs/{job['id']}/result", headers=AUTH).get_json()
    assert "ask not what your country can do for you" in normalise(result["text"])
