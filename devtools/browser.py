"""Headless Chromium for the web companion's browser tests and screenshots (Debian's `chromium`
and `chromium-driver` packages; selenium from the `test` extra)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (browser, driver) if browser and driver else None


def why_no_browser() -> str | None:
    """A sentence saying what is missing, or None when a browser can be driven."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the `test` extra)"
    if find_chromium() is None:
        return (
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    return None


def has_cjk_font() -> bool:
    """Whether Chromium can draw Chinese here (Debian: fonts-noto-cjk); without, it draws boxes."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    found = subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def start_chromium(size: str, language: str = "en-US") -> Any:
    """A headless Chromium WebDriver with a window of SIZES[size]."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    assert found is not None, why_no_browser()
    browser, driver = found
    width, height = SIZES[size]
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the CI machine runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--lang={language}",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    web = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    # Make the viewport (not the window around it) exactly the size asked for.
    web.set_window_size(width, height)
    inner = web.execute_script("return [window.innerWidth, window.innerHeight]")
    web.set_window_size(2 * width - inner[0], 2 * height - inner[1])
    return web
