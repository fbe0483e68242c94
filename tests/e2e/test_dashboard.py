"""The dashboard in a real browser on the simulated beamline watched by `beamwatch run`:
the board shows the beamline's states, a fault appears without a reload,
Acknowledge works and is audited, the timeline draws the last hours and a band's
value plot, and no page has a JavaScript error."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.demo_run import Receivers, Watch

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-8c1d"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_web(port: int):
    def edit(text: str) -> str:
        return text.replace('web: {listen: "127.0.0.1:0"}',
                            f'web: {{listen: "127.0.0.1:{port}", tokens: {{ana: "{TOKEN}"}}}}')
    return edit


async def test_board_fault_acknowledge_timeline(sim, httpserver, tmp_path, browser,
                                                artifacts):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    watch = Watch(sim, Receivers(httpserver), tmp_path, edit=with_web(port))
    errors: list[str] = []
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        page.on("console", lambda m: errors.append(f"{page.url}: {m.text}")
                if m.type == "error" else None)

        await page.goto(url + "/")
        await page.wait_for_selector('[data-check="fe-vacuum"]')
        tiles = await page.locator(".tile").count()
        assert tiles >= 95  # every check of the demo, grouped
        assert await page.locator(".tile.major, .tile.minor, .tile.invalid").count() == 0
        assert "Mode: user" in await page.locator("#mode-banner").inner_text()
        await page.screenshot(path=artifacts / "board-quiet.png", full_page=True)

        sim.fault("vacuum-loss")  # no reload from here on: the page follows by itself
        await page.wait_for_selector('[data-check="fe-vacuum"].major', timeout=60_000)
        await page.screenshot(path=artifacts / "board-fault.png", full_page=True)

        await page.fill("#who input", TOKEN)
        await page.click("#who button")
        await page.click('[data-check="fe-vacuum"] button.ack')
        await page.wait_for_selector('[data-check="fe-vacuum"].acked', timeout=20_000)
        assert "acknowledged by ana" in await page.locator(
            '[data-check="fe-vacuum"]').inner_text()
        log = json.loads(watch.cli("history", "--json", "--check", "fe-vacuum").stdout)
        assert [(r["actor"], r["via"]) for r in log if r["kind"] == "audit"] == [
            ("ana", "web")]

        await page.goto(url + "/incidents")
        await page.wait_for_selector("article.incident")
        assert "fe-vacuum" in await page.locator("article.incident").first.inner_text()
        await page.screenshot(path=artifacts / "incidents.png", full_page=True)

        await page.goto(url + "/log")
        await page.wait_for_selector("svg.timeline rect.band")
        assert await page.locator("svg.timeline text.label").count() >= 95
        major = page.locator('svg.timeline rect.band[data-check="fe-vacuum"][fill="#c62828"]')
        assert await major.count() == 1
        await major.click()
        await page.wait_for_selector("#plot canvas")  # uPlot drew the values
        await page.screenshot(path=artifacts / "log.png", full_page=True)

        await page.goto(url + "/noise")
        await page.wait_for_selector("#silence-form")
        await page.screenshot(path=artifacts / "noise.png", full_page=True)

        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        phone.on("pageerror", lambda e: errors.append(f"phone: {e}"))
        await phone.goto(url + "/")
        await phone.wait_for_selector('[data-check="fe-vacuum"]')
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # one column, no sideways scrolling
        await phone.screenshot(path=artifacts / "board-phone.png")
        assert errors == []
    finally:
        watch.stop()
        sim.clear()
