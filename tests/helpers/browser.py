"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven with Selenium, for the console's
browser tests; screenshots go to /tmp/console-<name>.png (and the test's artifacts folder when given)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path("/tmp")


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"{missing} missing: `make install` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def waiter(driver: Any, timeout: float = 60) -> Callable[[Callable[[Any], Any]], Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Callable[[Any], Any], seconds: float = timeout) -> Any:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition)

    return wait


def screenshot(driver: Any, name: str, artifacts: Path | None = None) -> Path:
    """A full-page screenshot: the window grows to the page's height first."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 120, 600), 4000))
    path = SHOTS / f"console-{name}.png"
    driver.save_screenshot(str(path))
    if artifacts is not None:
        shutil.copy2(path, artifacts / path.name)
    return path


def console_errors(driver: Any) -> list[str]:
    """The page's console errors (a CSP violation shows here), minus the API's own 4xx answers the test expects."""
    return [
        e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "status of 4" not in e["message"]
    ]
