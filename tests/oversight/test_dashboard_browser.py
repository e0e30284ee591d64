"""The dashboard in a real Chromium (Playwright), with client certificates for mTLS."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oversight.oversight_e2e import RunningServer, Script, World

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _context(browser, server: RunningServer, world: World, who: str):  # type: ignore[no-untyped-def]
    ident = world.identities[who]
    return browser.new_context(
        ignore_https_errors=True,  # the dev server CA is not in Chromium's trust store
        client_certificates=[
            {"origin": server.base_url, "certPath": str(ident.cert), "keyPath": str(ident.key)}
        ],
        viewport={"width": 1280, "height": 900},
    )


def test_dashboard_shows_the_scripted_numbers(
    browser, server: RunningServer, world: World, script: Script
) -> None:
    context = _context(browser, server, world, "overseer")
    page = context.new_page()
    answer = page.goto(f"{server.base_url}/oversight")
    assert answer is not None
    assert answer.status == 200
    total = page.locator("#totals [data-total]")
    shown = {
        total.nth(i).get_attribute("data-total"): total.nth(i).inner_text()
        for i in range(total.count())
    }
    assert shown == {
        "requests": str(script.requests),
        "disclosed": str(script.disclosed),
        "denied": str(script.denied),
        "no_match": str(script.no_match),
        "error": "0",
    }
    # charts are drawn (SVG with bars whose values match the tables)
    assert page.locator("svg.chart").count() >= 5
    disclosed_bars = page.locator('svg.chart rect[data-series="disclosed"]')
    assert (
        sum(
            int(disclosed_bars.nth(i).get_attribute("data-value") or 0)
            for i in range(disclosed_bars.count())
        )
        == script.disclosed
    )
    agency_row = page.locator("#agencies tbody tr").first
    assert agency_row.locator("td").all_inner_texts()[:4] == [
        "ICE-HSI",
        str(script.requests),
        str(script.disclosed),
        str(script.denied),
    ]
    reasons = page.locator("#reasons tbody tr td code").all_inner_texts()
    assert {*script.reasons, "no_unique_match"} <= set(reasons)
    assert page.locator('[data-checkpoint="tree_size"]').inner_text() == str(script.leaves)
    verification = page.locator('[data-checkpoint="verification"]').inner_text()
    assert verification.startswith(f"verified ({script.leaves} entries)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    context.close()


def test_dashboard_works_without_javascript(
    browser, server: RunningServer, world: World, script: Script
) -> None:
    ident = world.identities["overseer"]
    context = browser.new_context(
        ignore_https_errors=True,
        java_script_enabled=False,
        client_certificates=[
            {"origin": server.base_url, "certPath": str(ident.cert), "keyPath": str(ident.key)}
        ],
    )
    page = context.new_page()
    page.goto(f"{server.base_url}/oversight")
    assert page.locator('[data-total="disclosed"]').inner_text() == str(script.disclosed)
    assert page.locator("#agencies tbody tr").count() == 1
    context.close()


@pytest.mark.parametrize("who", ["agent-1", "prometheus"])
def test_other_roles_are_refused(browser, server: RunningServer, world: World, who: str) -> None:
    context = _context(browser, server, world, who)
    page = context.new_page()
    answer = page.goto(f"{server.base_url}/oversight")
    assert answer is not None
    assert answer.status == 403
    assert "role_forbidden" in page.content()
    assert page.locator("svg.chart").count() == 0
    context.close()
