"""Headless Chromium for report tests and screenshots (selenium + Debian's chromium/chromium-driver).

`chromium_driver()` returns None with the reason when no Chromium is installed, so tests can skip
saying why. Run as a script to screenshot a report: `python tests/browser.py report.html out.png`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> tuple[str | None, str | None]:
    browser = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return browser, driver


def chromium_driver(width: int = 1280, height: int = 900):
    """A headless Chrome WebDriver, or (None, reason)."""
    browser, driver_path = find_chromium()
    if not browser or not driver_path:
        return (
            None,
            "no Chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does this)",
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[dev]')"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options), None


def screenshot(html: Path, png: Path, width: int = 1280) -> None:
    """A full-page screenshot of `html` at `width` px."""
    driver, reason = chromium_driver(width)
    if driver is None:
        raise SystemExit(reason)
    try:
        driver.get(html.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height) + 120, 16000))
        driver.save_screenshot(str(png))
    finally:
        driver.quit()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1280)
