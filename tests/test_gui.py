"""`aurora gui` in a real browser: Debian's headless Chromium (driven by selenium) uploads a clip,
gets a streamed caption, the merged-token picture and per-answer stats, then asks a second question
about the same clip. A screenshot of the page is kept in the test's tmp dir."""

from __future__ import annotations

import io
import os
import shutil
import socket

import numpy as np
import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio")
pytest.importorskip("selenium")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import aurora  # noqa: E402
from aurora.serve.gui import launch_gui  # noqa: E402
from aurora.serve.token_view import paint_groups  # noqa: E402
from aurora.testing.media import make_frames, write_video  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1400,1300"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(xtuner_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    model = aurora.load(str(xtuner_ckpt), device="cpu")
    port = free_port()
    demo = launch_gui(model, port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def bot_texts(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '#aurora-chat [data-testid="bot"]')]


@pytest.mark.timeout(120)
def test_caption_a_clip_in_the_browser(app_url, browser, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", make_frames(16, 64, 64), fps=8)
    wait = WebDriverWait(browser, 30)
    browser.get(app_url)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#aurora-video input[type=file]"))
    upload.send_keys(clip)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aurora-video video"))
    browser.find_element(By.ID, "aurora-send").click()  # empty prompt: the model's caption prompt

    wait.until(lambda d: any(t.strip() for t in bot_texts(d)))
    merged = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aurora-merge img"))[0]
    wait.until(lambda d: "visual tokens" in d.find_element(By.ID, "aurora-stats").text)
    stats = browser.find_element(By.ID, "aurora-stats").text
    assert "8 frames" in stats and "prefill" in stats and "generate" in stats
    user = browser.find_element(By.CSS_SELECTOR, '#aurora-chat [data-testid="user"]').text
    assert user == "Describe the video in detail."

    # the merged-token picture: 8 frames in 2 rows of 4, patches coloured by token
    with httpx.Client(trust_env=False) as http:
        picture = np.asarray(Image.open(io.BytesIO(http.get(merged.get_attribute("src")).content)).convert("RGB"))
    assert picture.shape == (2 * 192 + 4, 4 * 192 + 3 * 4, 3)
    first = picture[:192, :192].reshape(-1, 3)
    assert len(np.unique(first, axis=0)) > 10  # many token colours, not a blank image

    shot = tmp_path / "gui.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # a second turn about the same clip keeps the conversation
    prompt = browser.find_element(By.CSS_SELECTOR, "#aurora-prompt textarea")
    prompt.send_keys("What moves?")
    browser.find_element(By.ID, "aurora-send").click()
    wait.until(lambda d: len(bot_texts(d)) == 2 and bot_texts(d)[1].strip())
    users = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '#aurora-chat [data-testid="user"]')]
    assert users == ["Describe the video in detail.", "What moves?"]


def test_paint_groups_colours_each_token_once():
    crop = np.zeros((16, 16, 3), dtype=np.uint8)
    source = np.array([[0, 0], [1, 0]])  # three patches merged into token 0, one patch is token 1
    painted = paint_groups(crop, source, alpha=1.0)
    assert painted.shape == (16, 16, 3)
    assert (painted[2, 2] == painted[2, 13]).all() and (painted[2, 2] == painted[13, 13]).all()
    assert not (painted[13, 2] == painted[2, 2]).all()
