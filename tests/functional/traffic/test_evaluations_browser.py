"""A stored plan's evaluation in SUMO in a real browser (Debian's Chromium, Playwright), on a
phone and a wide screen, in Chinese: an engineer requests it from the plan's page, the page
shows its progress and refreshes itself, and once the job has run it the page shows a chart per
figure and the table, all within the screen and nothing fetched from elsewhere. Screenshots land
in ``test-artifacts/screenshots/traffic-evaluation-*.png``."""

# The chromium and site fixtures are imported from the other browser tests and named as parameters.
# ruff: noqa: F811
from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import FilePayload, ViewportSize, expect
from tests.functional.traffic.test_traffic_browser import (  # noqa: F401 - the fixtures
    SCREENS,
    SYSTEM,
    Requests,
    Site,
    chromium,
    new_network,
    open_as,
    scales,
    shot,
    site,
    sound,
)
from tests.functional.web.test_browser import CHROMIUM

from civicloud.traffic import evaluations, plans
from civicloud.traffic.optimize import Limits

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("viewport", "screen"), SCREENS)
def test_an_engineer_requests_an_evaluation_and_reads_its_charts(
    chromium: Chromium, site: Site, viewport: ViewportSize, screen: str
) -> None:
    # Given a draft plan for a corridor
    network_id, _name = new_network(site)
    with site.services.db.unit_of_work() as session:
        plan_id = plans.draft_plan(
            session=session,
            actor=SYSTEM,
            network_id=network_id,
            name="早高峰",
            counts=site.counts.encode(),
            limits=Limits(),
        ).id
    page = open_as(chromium, site, site.drafter, viewport)
    seen = Requests(page.context)
    try:
        page.goto(f"{site.url}/console/traffic/plans/{plan_id}")
        form = page.locator("#evaluation-form")
        expect(form).to_be_visible()
        sound(page, site)
        # When the engineer asks for one sample, with the plan's counts
        form.locator("#evaluation-seeds").fill("1")
        form.locator("#evaluation-counts").set_input_files(
            FilePayload(name="counts.csv", mimeType="text/csv", buffer=site.counts.encode())
        )
        form.get_by_role("button", name="在微观仿真中评估").click()
        # Then the evaluation's page shows its progress while it waits
        expect(page.locator("#evaluation-progress")).to_contain_text("已完成 0 / 3 次仿真")
        expect(page.locator("progress.traffic-progress")).to_be_visible()
        sound(page, site)
        shot(page, f"evaluation-queued-{screen}")
        # And once the worker has run it, the charts and the table, within the screen
        evaluation_id = uuid.UUID(page.url.rsplit("/", 1)[1])
        ended = evaluations.run_evaluation(site.services.db, evaluation_id)
        assert ended is not None
        assert ended.status == "done", ended.error
        page.reload()
        charts = page.locator("figure.chart-bars")
        expect(charts.first).to_be_visible()
        assert charts.count() >= 6
        for i in range(charts.count()):
            scales(page, charts.nth(i))
        expect(page.locator("#evaluation-table tbody tr")).to_have_count(3)
        expect(page.locator("#evaluation-table")).to_contain_text("感应控制")
        sound(page, site)
        shot(page, f"evaluation-done-{screen}")
        seen.all_went_to(site)
    finally:
        page.context.close()
