"""Traffic's console in a real browser: Debian's Chromium, driven by Playwright.

The application runs under uvicorn on a free loopback port over the run's shared database (SQLite,
then PostgreSQL). A city's traffic bureau has two engineers and a viewer. On a phone and on a wide
screen, in Chinese (the default language): one engineer drafts a plan by uploading a counts file
on a corridor's page, a second approves and issues it with the page's buttons, every signal then
runs it, and one signal is rolled back; a viewer reads the same pages and is offered no action.
The map and the delay chart scale to the screen, the tables scroll in their own boxes, nothing
is wider than the screen, and no request leaves the installation. Screenshots land in
``test-artifacts/screenshots/traffic-*.png``. The browser is never downloaded: without
``/usr/bin/chromium`` these tests are skipped.
"""

# The chromium fixture is imported from the web shell's browser tests and named as a parameter.
# ruff: noqa: F811
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import BrowserContext, FilePayload, Locator, Page, ViewportSize, expect
from tests.factories.core import PASSWORD, make_member, make_sibling_world, unique
from tests.factories.traffic import counts_csv
from tests.functional.live_server import serving
from tests.functional.web.test_browser import (  # noqa: F401 - the chromium fixture
    CHROMIUM,
    SHOTS,
    chromium,
)

from civicloud.app import create_app
from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.traffic import networks, plans, sumo
from civicloud.traffic.network import read_network
from civicloud.traffic.optimize import Limits

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

PHONE: ViewportSize = {"width": 390, "height": 844}
WIDE: ViewportSize = {"width": 1600, "height": 1000}
SCREENS = [(PHONE, "phone"), (WIDE, "wide")]
SIGNALS = ["A0", "B0", "C0"]
SYSTEM = Actor.system("tests")
#: What the pages say in Chinese, the installation's default language.
ZH = {
    "networks": "交通信号",
    "map": "地图",
    "signals": "信号机及其当前配时方案",
    "plans": "信号配时方案",
    "draft": "编制方案",
    "drafted": "方案已编制。下发前须由另一位工程师审核。",
    "own": "本方案须由另一位工程师审核：编制人不能批准自己编制的方案。",  # noqa: RUF001 - Chinese punctuation
    "awaiting": "待审核",
    "approve": "批准",
    "reject": "驳回",
    "approved": "方案已批准，现在可以下发。",  # noqa: RUF001 - Chinese punctuation
    "issue": "下发到方案中的全部信号机",
    "issued": "方案已下发：相关信号机自即刻起按此方案运行。",  # noqa: RUF001 - Chinese punctuation
    "chart": "各信号机的预计控制延误",
    "timing": "各信号机配时",
    "rollback": "回退",
    "rolled_back": "信号机已回退到之前运行的方案。",
    "own_program": "路网原有配时",
}


@dataclass(frozen=True)
class Site:
    """The running console, and a city's traffic bureau: two engineers and a viewer."""

    url: str
    services: Services
    city_id: uuid.UUID
    drafter: str
    checker: str
    viewer: str
    content: bytes
    counts: str


@pytest.fixture(scope="module")
def site(core_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The application on a free loopback port over the shared database, with the bureau."""
    path = sumo.generate("corridor", tmp_path_factory.mktemp("net") / "corridor.net.xml")
    with core_services.db.unit_of_work() as session:
        world = make_sibling_world(session, core_services.passwords)
        city = world.a.child
        people = [
            make_member(session, core_services.passwords, home=city, role=role).user.username
            for role in ("traffic_engineer", "traffic_engineer", "traffic_viewer")
        ]
        city_id = city.id
    app: FastAPI = create_app(services=core_services)
    with serving(app) as url:
        yield Site(
            url,
            core_services,
            city_id,
            *people,
            content=path.read_bytes(),
            counts=counts_csv(read_network(Path(path))),
        )


def new_network(site: Site) -> tuple[uuid.UUID, str]:
    """A corridor of three signals imported for the bureau's city: its id and name."""
    name = unique("走廊")
    with site.services.db.unit_of_work() as session:
        row = networks.import_network(
            session=session, actor=SYSTEM, tenant_id=site.city_id, name=name, content=site.content
        )
        return row.id, name


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"traffic-{name}.png"), full_page=True)


def open_as(chromium: Chromium, site: Site, username: str, viewport: ViewportSize) -> Page:
    """A fresh browser signed in as ``username``, on Traffic's networks list, in Chinese."""
    context = chromium.new_context(
        viewport=viewport, locale="zh-CN", device_scale_factor=2 if viewport is PHONE else 1
    )
    page = context.new_page()
    page.goto(f"{site.url}/login?next=/console/traffic")
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-password").press("Enter")
    expect(page).to_have_url(f"{site.url}/console/traffic")
    return page


class Requests:
    """Every request a browser made, and what it was for (document, script, stylesheet ...)."""

    def __init__(self, context: BrowserContext) -> None:
        self.seen: list[tuple[str, str]] = []
        context.on(
            "request", lambda request: self.seen.append((request.url, request.resource_type))
        )

    def all_went_to(self, site: Site) -> None:
        """Nothing was asked of another host, and the stylesheets came from the installation."""
        away = [u for u, _ in self.seen if not u.startswith(f"{site.url}/")]
        assert not away, f"requests outside the installation: {away}"
        kinds = {kind for _, kind in self.seen}
        assert "stylesheet" in kinds, "the pages loaded no stylesheet at all"


def sound(page: Page, site: Site) -> None:
    """The page fits the screen, its tables scroll in their own boxes, its assets are its own."""
    shape = page.evaluate(
        """() => {
        const screen = document.documentElement.clientWidth;
        const tables = [...document.querySelectorAll("main table")].map((table) => {
            const wrap = table.closest(".table-wrap");
            if (!wrap) return {wrapped: false};
            const box = wrap.getBoundingClientRect();
            const overflowing = table.scrollWidth > wrap.clientWidth;
            const before = wrap.scrollLeft;
            wrap.scrollLeft = wrap.scrollWidth;
            const scrolled = wrap.scrollLeft > before;
            wrap.scrollLeft = before;
            return {
                wrapped: true,
                left: box.left,
                right: box.right,
                overflowX: getComputedStyle(wrap).overflowX,
                overflowing,
                scrolled,
            };
        });
        const assets = [
            ...[...document.querySelectorAll("script[src]")].map((e) => e.src),
            ...[...document.querySelectorAll("link[href]")].map((e) => e.href),
            ...[...document.querySelectorAll("img[src]")].map((e) => e.src),
            ...performance.getEntriesByType("resource").map((e) => e.name),
        ];
        return {
            wide: document.scrollingElement.scrollWidth,
            screen,
            tables,
            assets,
            inline: document.querySelectorAll("main svg image, main svg use[href^=http]").length,
        };
    }"""
    )
    screen = shape["screen"]
    assert shape["wide"] <= screen, (
        f"{page.url} is {shape['wide'] - screen}px wider than the screen"
    )
    for table in shape["tables"]:
        assert table["wrapped"], f"a table on {page.url} is not in a .table-wrap"
        assert table["left"] >= 0
        assert table["right"] <= screen
        assert table["overflowX"] in ("auto", "scroll")
        # a table wider than its box is scrolled in it, not cut off
        assert table["scrolled"] == table["overflowing"]
    away = [a for a in shape["assets"] if not a.startswith(f"{site.url}/")]
    assert not away, f"{page.url} loads from outside the installation: {away}"
    assert shape["inline"] == 0


def scales(page: Page, figure: Locator) -> None:
    """The drawing is shown, as wide as it may be and no wider than the screen."""
    expect(figure).to_be_visible()
    box = figure.bounding_box()
    assert box is not None
    screen = page.evaluate("() => document.documentElement.clientWidth")
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= screen
    assert box["width"] >= min(screen * 0.7, 400), f"the drawing is only {box['width']}px wide"
    assert box["height"] > 50


def section(page: Page, heading: str) -> Locator:
    """The card whose heading reads ``heading``."""
    return page.locator("section.card").filter(
        has=page.get_by_role("heading", name=heading, exact=True)
    )


def running(page: Page, tls_id: str) -> Locator:
    """The signal's row in the table of what each signal runs."""
    rows = section(page, ZH["signals"]).locator("tbody tr")
    return rows.filter(has=page.locator("td:first-child", has_text=re.compile(f"^{tls_id}$")))


def check_the_chart(page: Page) -> None:
    """A before and an after bar per signal, each after bar shorter (the plan cuts delay)."""
    chart = page.locator("svg.traffic-chart")
    scales(page, chart)
    before, after = (
        chart.locator("rect.traffic-bar-before"),
        chart.locator("rect.traffic-bar-after"),
    )
    expect(before).to_have_count(len(SIGNALS))
    expect(after).to_have_count(len(SIGNALS))
    for i in range(len(SIGNALS)):
        was = float(before.nth(i).get_attribute("width") or 0)
        now = float(after.nth(i).get_attribute("width") or 0)
        assert 0 < now < was
    expect(chart.locator("text.traffic-chart-label")).to_have_text(SIGNALS)
    # and its words are drawn large enough to read, inside the drawing
    words = chart.evaluate(
        """(svg) => {
        const box = svg.getBoundingClientRect();
        const scale = svg.getScreenCTM().a;
        return [...svg.querySelectorAll("text")].map((text) => {
            const r = text.getBoundingClientRect();
            return {
                px: parseFloat(getComputedStyle(text).fontSize) * scale,
                inside: r.left >= box.left && r.right <= box.right + 0.5,
            };
        });
    }"""
    )
    assert len(words) == 3 * len(SIGNALS)
    for word in words:
        assert word["px"] >= 10, f"the chart's words are {word['px']:.1f}px high"
        assert word["inside"]


@pytest.mark.parametrize(("viewport", "screen"), SCREENS)
def test_engineers_draft_approve_issue_and_roll_back_a_plan(
    chromium: Chromium, site: Site, viewport: ViewportSize, screen: str
) -> None:
    network_id, network_name = new_network(site)
    network_url = f"{site.url}/console/traffic/networks/{network_id}"
    plan_name = f"早高峰 {screen}"
    drafter = open_as(chromium, site, site.drafter, viewport)
    drafted = Requests(drafter.context)
    try:
        # Given the networks list, in Chinese, naming the corridor
        expect(drafter.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(drafter.get_by_role("heading", level=1)).to_have_text(ZH["networks"])
        sound(drafter, site)
        shot(drafter, f"networks-{screen}")
        # When the engineer opens the corridor
        drafter.get_by_role("link", name=network_name, exact=True).click()
        expect(drafter).to_have_url(network_url)
        # (a page of its own name and class, with one draft form and one detector mapping
        # form, inside the main content)
        assert drafter.title().startswith(f"{network_name} · ")
        expect(drafter.locator("body")).to_have_attribute("class", "console traffic")
        draft_form = "form[enctype='multipart/form-data'][action$='/plans']"
        expect(drafter.locator(draft_form)).to_have_count(1)
        expect(drafter.locator(f"main {draft_form}")).to_have_count(1)
        expect(drafter.locator("main form[action$='/detectors']")).to_have_count(1)
        # Then its map is drawn to the screen's width, from the network itself
        expect(section(drafter, ZH["map"])).to_have_count(1)
        scales(drafter, drafter.locator("svg.traffic-map"))
        expect(drafter.locator("svg.traffic-map circle")).to_have_count(len(SIGNALS))
        # And every signal runs the network's own program, with nothing to roll back
        for tls_id in SIGNALS:
            expect(running(drafter, tls_id)).to_contain_text(ZH["own_program"])
        expect(drafter.get_by_role("button", name=ZH["rollback"])).to_have_count(0)
        expect(section(drafter, ZH["plans"])).to_have_count(1)
        sound(drafter, site)
        shot(drafter, f"network-{screen}")
        # When they draft a plan by uploading the counts
        drafter.get_by_label("方案名称").fill(plan_name)
        drafter.locator("#plan-counts").set_input_files(
            FilePayload(name="counts.csv", mimeType="text/csv", buffer=site.counts.encode())
        )
        drafter.get_by_role("button", name=ZH["draft"], exact=True).click()
        # Then the plan's page opens, awaiting another engineer's review
        expect(drafter).to_have_url(
            re.compile(
                rf"^{re.escape(site.url)}/console/traffic/plans/[0-9a-f-]{{36}}\?done=drafted$"
            )
        )
        plan_url = drafter.url.split("?")[0]
        expect(drafter.get_by_role("heading", level=1)).to_have_text(plan_name)
        expect(drafter.get_by_role("status")).to_have_text(ZH["drafted"])
        expect(drafter.get_by_text(ZH["own"])).to_be_visible()
        expect(drafter.get_by_role("button", name=ZH["approve"])).to_have_count(0)
        expect(drafter.get_by_role("button", name=ZH["issue"])).to_have_count(0)
        check_the_chart(drafter)
        sound(drafter, site)
        shot(drafter, f"plan-drafted-{screen}")
        # And in English the same page says so in English
        drafter.locator(".lang-switch a[hreflang=en]").click()
        expect(drafter.locator("html")).to_have_attribute("lang", "en")
        expect(drafter.get_by_text("Another engineer reviews this plan")).to_be_visible()
        drafted.all_went_to(site)
    finally:
        drafter.context.close()

    checker = open_as(chromium, site, site.checker, viewport)
    checked = Requests(checker.context)
    try:
        # When a second engineer opens the plan and approves it
        checker.goto(plan_url)
        expect(checker.locator("main")).to_contain_text(ZH["awaiting"])
        expect(checker.get_by_text(ZH["own"])).to_have_count(0)
        expect(section(checker, ZH["chart"])).to_have_count(1)
        expect(section(checker, ZH["timing"]).locator("tbody tr")).to_have_count(len(SIGNALS))
        check_the_chart(checker)
        sound(checker, site)
        shot(checker, f"plan-review-{screen}")
        checker.locator("#review-note").fill("已核对高峰流量。")
        checker.get_by_role("button", name=ZH["approve"], exact=True).click()
        # Then it is approved, and may be issued
        expect(checker).to_have_url(f"{plan_url}?done=approved")
        expect(checker.get_by_role("status")).to_have_text(ZH["approved"])
        expect(checker.get_by_role("button", name=ZH["approve"])).to_have_count(0)
        expect(checker.get_by_role("button", name=ZH["reject"])).to_have_count(0)
        expect(checker.locator("main")).to_contain_text("已核对高峰流量。")
        sound(checker, site)
        # When they issue it
        checker.get_by_role("button", name=ZH["issue"], exact=True).click()
        # Then the network's page shows every signal running it
        expect(checker).to_have_url(f"{network_url}?done=issued")
        expect(checker.get_by_role("status")).to_have_text(ZH["issued"])
        for tls_id in SIGNALS:
            row = running(checker, tls_id)
            expect(row.get_by_role("link", name=plan_name)).to_have_attribute(
                "href", plan_url.removeprefix(site.url)
            )
            expect(row.get_by_role("button", name=ZH["rollback"])).to_be_visible()
            # (a plan, since when and a button: a few lines, not a word per line)
            box = row.bounding_box()
            assert box is not None
            assert box["height"] < 140, f"{tls_id}'s row is {box['height']}px high"
        plans_table = section(checker, ZH["plans"]).locator("tbody tr")
        expect(plans_table).to_have_count(1)
        expect(plans_table).to_contain_text("已批准")
        sound(checker, site)
        shot(checker, f"network-issued-{screen}")
        # When they roll back the middle signal
        running(checker, "B0").get_by_role("button", name=ZH["rollback"]).click()
        # Then it runs the network's own program again, and the others still run the plan
        expect(checker).to_have_url(f"{network_url}?done=rolled_back")
        expect(checker.get_by_role("status")).to_have_text(ZH["rolled_back"])
        expect(running(checker, "B0")).to_contain_text(ZH["own_program"])
        expect(running(checker, "B0").get_by_role("button")).to_have_count(0)
        for tls_id in ("A0", "C0"):
            expect(running(checker, tls_id).get_by_role("link", name=plan_name)).to_be_visible()
        sound(checker, site)
        shot(checker, f"network-rolled-back-{screen}")
        checked.all_went_to(site)
    finally:
        checker.context.close()


@pytest.mark.parametrize(("viewport", "screen"), SCREENS)
def test_a_viewer_reads_every_page_and_is_offered_no_action(
    chromium: Chromium, site: Site, viewport: ViewportSize, screen: str
) -> None:
    # Given a corridor running an issued plan, and a second plan awaiting review
    network_id, network_name = new_network(site)
    with site.services.db.unit_of_work() as session:
        drafted = [
            plans.draft_plan(
                session=session,
                actor=SYSTEM,
                network_id=network_id,
                name=name,
                counts=site.counts.encode(),
                limits=Limits(),
            ).id
            for name in ("平峰", "晚高峰")
        ]
        session.flush()  # the plans' rows, before they are reviewed
        plans.review_plan(session=session, actor=SYSTEM, plan_id=drafted[0], approve=True)
        plans.issue_plan(session=session, actor=SYSTEM, plan_id=drafted[0])
    page = open_as(chromium, site, site.viewer, viewport)
    seen = Requests(page.context)
    try:
        sound(page, site)
        # When the viewer opens the corridor
        page.get_by_role("link", name=network_name, exact=True).click()
        # Then they see the map, what runs now and the plans, and no form at all
        scales(page, page.locator("svg.traffic-map"))
        for tls_id in SIGNALS:
            expect(running(page, tls_id).get_by_role("link", name="平峰")).to_be_visible()
        expect(section(page, ZH["plans"]).locator("tbody tr")).to_have_count(2)
        expect(page.locator("main form")).to_have_count(0)
        expect(page.locator("main input[type=file]")).to_have_count(0)
        expect(page.get_by_role("button", name=ZH["rollback"])).to_have_count(0)
        expect(page.get_by_role("button", name=ZH["draft"])).to_have_count(0)
        sound(page, site)
        shot(page, f"viewer-network-{screen}")
        # And each plan's page shows its figures, with nothing to approve, reject or issue
        for name in ("晚高峰", "平峰"):
            section(page, ZH["plans"]).get_by_role("link", name=name, exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_have_text(name)
            check_the_chart(page)
            expect(page.locator("main form")).to_have_count(0)
            for button in ("approve", "reject", "issue"):
                expect(page.get_by_role("button", name=ZH[button])).to_have_count(0)
            expect(page.get_by_text(ZH["own"])).to_have_count(0)
            sound(page, site)
            shot(page, f"viewer-plan-{screen}")
            page.go_back()
        seen.all_went_to(site)
    finally:
        page.context.close()
