"""`aurora gallery` in a real browser: Debian's headless Chromium (driven by selenium) opens two
Video-MME runs, reads the run summaries, filters to the items the runs disagree on, searches, and
opens an item's frames. The result folders are unchanged afterwards."""

from __future__ import annotations

import os

import pytest

from tests.test_gui import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, free_port  # skips without chromium / gradio

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from aurora.gallery.app import launch_gallery  # noqa: E402
from aurora.gallery.runs import load_runs  # noqa: E402
from tests.gallery_fixtures import RUN_A, RUN_B, TRUTH, snapshot, videomme_runs  # noqa: E402


@pytest.fixture
def gallery(media, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    folders = videomme_runs(media, tmp_path / "results")
    before = snapshot(folders)
    port = free_port()
    demo = launch_gallery(load_runs([str(f) for f in folders]), port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
    assert snapshot(folders) == before  # read only, even after a browser session


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def count_text(driver) -> str:
    found = driver.find_elements(By.ID, "gallery-count")
    return found[0].text if found else ""


def choose(driver, elem_id: str, label: str) -> None:
    option = next(e for e in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} label") if e.text.strip() == label)
    option.click()


@pytest.mark.timeout(120)
def test_two_runs_filtered_to_disagreements(gallery, browser, tmp_path):
    right = {name: sum(run[q] == TRUTH[q]["answer"] for q in TRUTH) for name, run in (("run-a", RUN_A), ("run-b", RUN_B))}
    disagree = [q for q in TRUTH if (RUN_A[q] == TRUTH[q]["answer"]) != (RUN_B[q] == TRUTH[q]["answer"])]
    wait = WebDriverWait(browser, 30)
    browser.get(gallery)
    wait.until(lambda d: count_text(d) == f"{len(TRUTH)} of {len(TRUTH)} items")
    runs = browser.find_elements(By.CSS_SELECTOR, "#gallery-runs tr.gallery-run")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text.split("\n")[0] for r in runs] == ["run-a", "run-b"]
    assert [int(r.find_elements(By.TAG_NAME, "td")[8].text) for r in runs] == [right["run-a"], right["run-b"]]

    choose(browser, "gallery-outcome", "runs disagree")
    wait.until(lambda d: count_text(d) == f"{len(disagree)} of {len(TRUTH)} items")
    shown = browser.find_elements(By.CSS_SELECTOR, "#gallery-items tr.gallery-item")
    assert [row.get_attribute("data-key") for row in shown] == disagree
    cells = shown[0].find_elements(By.CSS_SELECTOR, "td.gallery-pred")
    assert len(cells) == 2 and {cells[0].text[:1], cells[1].text[:1]} == {"✓", "✗"}  # side by side, one right

    search = browser.find_element(By.CSS_SELECTOR, "#gallery-search textarea, #gallery-search input")
    search.send_keys("referee", Keys.ENTER)
    wait.until(lambda d: count_text(d) == f"1 of {len(TRUTH)} items")
    wait.until(lambda d: "002-3" in d.find_element(By.ID, "gallery-detail").text)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery-frames img")) == 3)  # run A's 3 frames
    shot = tmp_path / "gallery.png"
    browser.save_screenshot(str(shot))
    assert os.path.getsize(shot) > 10_000
