"""The jobs pages in a real browser: Debian's headless chromium driven by Playwright (never its own
downloaded browsers). The list, a job page, an evidence link landing on its log line, no console
errors (a CSP violation or a broken resource is one), no horizontal page scroll at 390 px, and
screenshots in the test's output directory."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pages.conftest import REPO_ROOT, StoredJob

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NARROW = {"width": 390, "height": 844}


def _browser_context(p: Any, profile: Path, viewport: dict[str, int]) -> Any:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: run scripts/setup.sh (it installs Debian's chromium package)")
    profile.mkdir()
    return p.chromium.launch_persistent_context(
        str(profile),  # a new, empty --user-data-dir
        executable_path=str(CHROMIUM),
        headless=True,
        args=FLAGS,
        viewport=viewport,
    )


def _horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page body scrolls sideways (0: none)."""
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def _in_view(page: Any, selector: str) -> bool:
    return bool(
        page.evaluate(
            """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                 return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }""",
            selector,
        )
    )


@pytest.mark.slow
def test_jobs_pages_in_headless_chromium(
    bot_server: Any, make_job: Callable[..., StoredJob], tmp_path: Path
) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - setup installs it
        pytest.fail("the playwright package is missing: run scripts/setup.sh (pip install -e '.[dev]')")
    failed = make_job("failed", public_url=bot_server.url)
    done = make_job("succeeded", public_url=bot_server.url)
    name, line, text = failed.cited[-1]
    base = bot_server.url
    problems: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with sync_playwright() as p:
        ctx = _browser_context(p, tmp_path / "profile", {"width": 1280, "height": 900})
        page = ctx.new_page()
        page.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.on(
            "response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
        )

        # the list: both jobs, each linking its page
        assert page.goto(base + "/jobs").status == 200
        for stored in (failed, done):
            assert page.locator(f'a[href="/jobs/{stored.job.id}"]').count() == 1
        page.screenshot(path=str(shots / "jobs-wide.png"), full_page=True)

        # a job page, reached by clicking the list's link
        page.click(f'a[href="/jobs/{failed.job.id}"]')
        page.wait_for_url(f"**/jobs/{failed.job.id}")
        assert failed.job.id in page.locator("#job-id").inner_text()
        assert page.locator("#stage-real-gate").is_visible()
        page.screenshot(path=str(shots / "job-wide.png"), full_page=True)

        # an evidence link with an anchor lands on that line of the log, in view and highlighted
        page.click(f'a[href="/jobs/{failed.job.id}/logs/{name}#L{line}"]')
        page.wait_for_url(f"**/jobs/{failed.job.id}/logs/{name}#L{line}")
        target = page.locator(f"#L{line}")
        assert target.count() == 1 and target.inner_text().split("\n", 1)[0].strip() != ""
        assert text.strip()[:40] in target.inner_text()
        assert _in_view(page, f"#L{line}"), f"line {line} is not scrolled into view"
        assert page.evaluate("location.hash") == f"#L{line}"
        assert page.evaluate(f"document.querySelector('#L{line}').matches(':target')")
        page.screenshot(path=str(shots / "log-anchor-wide.png"))
        ctx.close()

        # a phone-sized viewport: nothing scrolls sideways but the log/pre blocks themselves
        ctx = _browser_context(p, tmp_path / "profile-narrow", NARROW)
        page = ctx.new_page()
        page.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
        )
        for label, url in (
            ("jobs", "/jobs"),
            ("job-failed", f"/jobs/{failed.job.id}"),
            ("job-succeeded", f"/jobs/{done.job.id}"),
            ("log", f"/jobs/{failed.job.id}/logs/{name}#L{line}"),
        ):
            assert page.goto(base + url).status == 200, url
            over = _horizontal_overflow(page)
            page.screenshot(path=str(shots / f"{label}-390.png"), full_page=label != "log")
            assert over == 0, f"{url} scrolls {over}px sideways at 390px wide"
        assert _in_view(page, f"#L{line}")
        ctx.close()

    assert not problems, problems
    assert sorted(x.name for x in shots.iterdir()) == sorted(
        [
            "jobs-wide.png",
            "job-wide.png",
            "log-anchor-wide.png",
            "jobs-390.png",
            "job-failed-390.png",
            "job-succeeded-390.png",
            "log-390.png",
        ]
    )
    assert all(x.stat().st_size > 1000 for x in shots.iterdir())
    _keep_one(shots / "job-failed-390.png")


def _keep_one(shot: Path) -> None:
    """Copy a screenshot to tests/output/ only when git ignores that directory (never committed)."""
    out = REPO_ROOT / "tests" / "output"
    ignored = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", "tests/output/" + shot.name], check=False
    )
    if ignored.returncode == 0:
        out.mkdir(exist_ok=True)
        shutil.copy(shot, out / shot.name)
