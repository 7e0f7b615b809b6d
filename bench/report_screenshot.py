"""A report's first screen as a reader sees it: report.html in headless Chromium, 1280×800, saved as PNG, and
optionally the summary's row of sample grids alone.

    python bench/report_screenshot.py quick-report docs/images/quick-report-screen.png [docs/images/quick-grids.png]

Needs Chromium (Debian: `apt-get install chromium`) and the dev extra's playwright.
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main():
    report, out = Path(sys.argv[1]) / "report.html", Path(sys.argv[2])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(out))
        if len(sys.argv) > 3:
            page.locator(".grids").screenshot(path=sys.argv[3])
        browser.close()
    print(f"wrote {', '.join(sys.argv[2:])}")


if __name__ == "__main__":
    main()
