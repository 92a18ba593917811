"""The dashboard draws a chain's graph while the chain runs (issue #21), from the progress stream, in a real
headless browser against a real node: before, the graph appeared only once the chain had finished."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from symphony.testing import open_swarm
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_FLAGS, SLOW_MODEL

pytestmark = pytest.mark.e2e


def test_a_running_chain_shows_its_graph_with_the_running_step(tmp_path: Path) -> None:
    with open_swarm(tmp_path) as swarm:
        node = swarm.spawn("n0", args=("--model", SLOW_MODEL)).wait_ready()
        api = str(node.info["api"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(api + "/")
                page.wait_for_selector("#conn.live", timeout=30_000)
                task_id = httpx.post(api + "/v1/tasks", json={"question": "What is 6 * 7?", "cots": 1},
                                     timeout=10).json()["task_id"]
                running = page.locator(f'.task[data-task="{task_id}"][data-status="running"]')
                running.locator(".step", has_text="running…").wait_for(timeout=60_000)
                bar = running.locator(".chain .dag rect.span")
                bar.first.wait_for(timeout=10_000)  # drawn while the chain runs, from step_assigned
                assert running.count() == 1 and bar.first.get_attribute("data-step") == "0"
                done = page.locator(f'.task[data-task="{task_id}"][data-status="done"]')
                done.wait_for(timeout=60_000)
                assert done.locator(".chain .dag rect.span").count() >= 1  # the finished chain's graph, from its trace
            finally:
                browser.close()
