"""A citizen looks up and pays a Dalian traffic fine in Chromium, as they type the plate.

The Dalian site of ``test_pay_browser`` (its tenants, billers and water bills) with two fines of
the traffic police added, each with its decision (number, time, place, offence, points); the
offence times are given in UTC, and the pages show them in the installation's zone (its
default, Asia/Shanghai: UTC+8). The site is served on a free loopback port of its own. Screenshots land in
``test-artifacts/screenshots/fine-*.png``. The browser is never downloaded: without
``/usr/bin/chromium`` these tests are skipped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Locator, Page, ViewportSize, expect
from sqlalchemy import select
from tests.functional.live_server import free_port, serving
from tests.functional.pay.test_pay_browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    SHOTS,
    chromium,
    fits,
    seed_dalian,
)

from civicloud.app import build_services, create_app, load_settings, prepare_database
from civicloud.core.actor import Actor
from civicloud.core.config import AuthSettings, WebSettings
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import billing
from civicloud.pay import web as pay_web
from civicloud.pay.models import Biller
from civicloud.pay.settings import PaySettings

__all__ = ["chromium"]  # the fixture shared with test_pay_browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

POLICE_ZH, POLICE_EN = "大连市公安局交通警察支队", "Dalian Traffic Police"
WATER_ZH, WATER_EN = "大连市供水有限公司", "Dalian Water Supply"
#: The plate of the fine looked up, and as a citizen types it: lower case, full-width digits.
PLATE = "辽B7K2M9"
PLATE_TYPED = "辽b\uff17k\uff12m\uff19"
#: Its decision. The offence was at 08:42 in the installation's zone (UTC+8), sent in UTC.
LOOKED_UP: dict[str, Any] = {
    "decision_number": "2102261105000001",
    "offence_time": "2026-11-03T00:42:00Z",
    "place": "大连市中山区人民路与港湾街交叉口",
    "offence": "驾驶机动车违反道路交通信号灯通行",
    "offence_code": "1625",
    "points": 6,
}
SHOWN_TIME = "2026-11-03 08:42 UTC+8"
#: The fine paid by the last test, of another plate (so the look-ups above stay open).
PAID_PLATE, PAID_PLATE_TYPED = "辽B3C8D1", "辽b 3c8 d1"
PAID: dict[str, Any] = {
    "decision_number": "2102261105000002",
    "offence_time": "2026-11-04T10:05:00Z",
    "place": "大连市西岗区黄河路与长春路交叉口",
    "offence": "机动车违反禁止标线指示",
    "offence_code": "1345",
    "points": 3,
}
PAID_TIME = "2026-11-04 18:05 UTC+8"
#: A billing period the fines carry in their rows, which no page of a fine shows.
PERIOD = "2026-11"
NOT_A_PERIOD = re.compile(r"2026-11(?!-)|账期|Period")

VIEWS: dict[str, ViewportSize] = {"phone": PHONE, "desktop": DESKTOP}
LOCALES = {"zh": "zh-CN", "en": "en-US"}
HTML_LANG = {"zh": "zh-CN", "en": "en"}


def seed_fines(services: Services, biller_id: uuid.UUID) -> None:
    """The two fines, each with its decision."""
    due = (utcnow().date() + timedelta(days=15)).isoformat()
    with services.db.unit_of_work() as session:
        report = billing.import_bills(
            session=session,
            actor=Actor.system("tests"),
            biller_id=biller_id,
            rows=[
                {
                    "bill_number": f"FINE-{PERIOD.replace('-', '')}-{number}",
                    "account_number": plate,
                    "payer_name": payer,
                    "amount_fen": amount,
                    "period": PERIOD,
                    "due_date": due,
                    "details": details,
                }
                for number, plate, payer, amount, details in (
                    ("000001", PLATE, "赵军", 20_000, LOOKED_UP),
                    ("000002", PAID_PLATE, "孙丽", 15_000, PAID),
                )
            ],
        )
        assert report.accepted == 2, report


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Dalian's bill payment with the traffic police's fines, on a free loopback port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("civicloud-fine-browser"),
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        # the installation's zone, as the default has it: pages show times in it
        web=WebSettings(time_zone="Asia/Shanghai"),
        pay=PaySettings(public_base_url=url),
    )
    services = build_services(settings)
    prepare_database(services)
    seed_dalian(services)
    with services.db.unit_of_work(write=False) as session:
        police = session.scalars(select(Biller).where(Biller.code == "fines")).one()
    seed_fines(services, police.id)
    app: FastAPI = create_app(services=services)
    app.include_router(pay_web.router)
    try:
        with serving(app, port):
            yield url
    finally:
        services.db.dispose()


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"fine-{name}.png"), full_page=True)


def open_biller(chromium: Chromium, site: str, view: str, language: str, biller: str) -> Page:
    """A new browser of that size and language, on the look-up page of ``biller``."""
    context = chromium.new_context(
        viewport=VIEWS[view],
        locale=LOCALES[language],
        device_scale_factor=2 if view == "phone" else 1,
    )
    page = context.new_page()
    page.goto(f"{site}/pay")
    expect(page.locator("html")).to_have_attribute("lang", HTML_LANG[language])
    page.get_by_role("link", name=biller).click()
    return page


def lines_of(element: Locator) -> int:
    """How many lines the text of ``element`` is laid out on."""
    count: int = element.evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }"
    )
    return count


def fact(bill: Locator, key: str) -> Locator:
    """The value shown beside ``key`` on a listed bill."""
    return (
        bill.locator(".pay-bill-facts > span")
        .filter(has=bill.page.locator(".pay-k", has_text=re.compile(f"^{re.escape(key)}$")))
        .locator(".pay-v")
    )


FINE_WORDS = {
    "zh": {
        "field": "车牌号码",
        "find": "查询账单",
        "time": "违法时间",
        "place": "违法地点",
        "decision": "决定书编号",
        "points": "记分",
        "amount": "罚款金额",
        "total": "¥200.00",
        "payer": "缴费人",
    },
    "en": {
        "field": "Licence plate number",
        "find": "Find my bills",
        "time": "Offence time",
        "place": "Offence place",
        "decision": "Decision number",
        "points": "Penalty points",
        "amount": "Fine amount",
        "total": "CNY 200.00",
        "payer": "Payer",
    },
}


@pytest.mark.parametrize("view", ["phone", "desktop"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_citizen_finds_a_fine_by_the_plate_as_typed_and_sees_its_decision(
    chromium: Chromium, site: str, view: str, language: str
) -> None:
    words = FINE_WORDS[language]
    # Given the traffic police's look-up page, which asks for the licence plate
    page = open_biller(chromium, site, view, language, POLICE_ZH if language == "zh" else POLICE_EN)
    expect(page.get_by_label(words["field"])).to_be_visible()
    # When the citizen types the plate in lower case with full-width digits
    page.get_by_label(words["field"]).fill(PLATE_TYPED)
    page.get_by_role("button", name=words["find"]).click()
    # Then the fine of 辽B7K2M9 (as the police write it) is found
    bills = page.locator(".pay-bill")
    expect(bills).to_have_count(1)
    fine = bills.first
    # And the plate shown is the one looked up, as the police write it, not as typed
    expect(page.locator(".pay-account-line .pay-mono")).to_have_text(PLATE)
    # And it is shown as a fine: the offence as its title, with the time (in the installation's
    # zone, with its offset), place, decision number and points
    expect(fine.locator(".pay-bill-period")).to_have_text(LOOKED_UP["offence"])
    expect(fact(fine, words["time"])).to_have_text(SHOWN_TIME)
    expect(fact(fine, words["place"])).to_have_text(str(LOOKED_UP["place"]))
    expect(fact(fine, words["decision"])).to_have_text(str(LOOKED_UP["decision_number"]))
    # (the 16 digits of the decision number, and the time with its offset, each on one line,
    # never broken in the middle)
    assert lines_of(fact(fine, words["decision"])) == 1
    assert lines_of(fact(fine, words["time"])) == 1
    expect(fact(fine, words["points"])).to_have_text("6")
    expect(fact(fine, words["amount"])).to_have_text(words["total"])
    expect(fact(fine, words["payer"])).to_have_text("赵*")
    # And none of a utility bill's fields: no billing period, no bill number
    expect(fine).not_to_contain_text(NOT_A_PERIOD)
    expect(fine).not_to_contain_text("FINE-")
    # And the page fits the screen
    fits(page, VIEWS[view]["width"])
    shot(page, f"01-bills-{language}-{view}")
    page.context.close()


@pytest.mark.parametrize(
    ("biller", "language", "view", "field", "asked"),
    [
        (POLICE_ZH, "zh", "phone", "车牌号码", "请输入车牌号码。"),
        (POLICE_EN, "en", "desktop", "Licence plate number", "Enter the licence plate number."),
        (WATER_ZH, "zh", "desktop", "户号", "请输入户号。"),
        (WATER_EN, "en", "phone", "Customer account number", "Enter the account number."),
    ],
)
def test_an_empty_account_field_asks_for_the_number(
    chromium: Chromium,
    site: str,
    biller: str,
    language: str,
    view: str,
    field: str,
    asked: str,
) -> None:
    page = open_biller(chromium, site, view, language, biller)
    # When the citizen looks up nothing (a few blanks)
    page.get_by_label(field).fill("   ")
    page.get_by_role("button", name=FINE_WORDS[language]["find"]).click()
    # Then the field asks for the number, in the page's language, and says nothing of a format
    expect(page.get_by_label(field)).to_have_attribute("aria-invalid", "true")
    error = page.locator("#pay-account-error")
    expect(error).to_contain_text(asked)
    expect(error).not_to_contain_text(re.compile("格式|format", re.IGNORECASE))
    fits(page, VIEWS[view]["width"])
    kind = "plate" if biller in (POLICE_ZH, POLICE_EN) else "account"
    shot(page, f"02-empty-{kind}-{language}-{view}")
    page.context.close()


@pytest.mark.parametrize(("language", "view"), [("zh", "phone"), ("en", "desktop")])
def test_a_water_account_typed_with_spaces_is_found(
    chromium: Chromium, site: str, language: str, view: str
) -> None:
    page = open_biller(chromium, site, view, language, WATER_ZH if language == "zh" else WATER_EN)
    field = "户号" if language == "zh" else "Customer account number"
    # When the account number is typed in groups, as it is printed on the paper bill
    page.get_by_label(field).fill(" 0411 000 002 ")
    page.get_by_role("button", name=FINE_WORDS[language]["find"]).click()
    # Then Li Wei's water bill of 2026-11 (account 0411000002) is found, with its period
    bills = page.locator(".pay-bill")
    expect(bills).to_have_count(1)
    expect(bills.first).to_contain_text("L****i")
    expect(bills.first.locator(".pay-bill-period")).to_contain_text("2026-11")
    fits(page, VIEWS[view]["width"])
    shot(page, f"03-water-spaces-{language}-{view}")
    page.context.close()


def test_a_paid_fine_s_receipt_and_its_verification_show_the_decision(
    chromium: Chromium, site: str
) -> None:
    # Given a citizen on a phone in Chinese who finds the second fine, its plate typed loosely
    page = open_biller(chromium, site, "phone", "zh", POLICE_ZH)
    page.get_by_label("车牌号码").fill(PAID_PLATE_TYPED)
    page.get_by_role("button", name="查询账单").click()
    expect(page.locator(".pay-bill")).to_have_count(1)
    # When they check what they pay: the offence and the decision number, not a period
    page.get_by_role("button", name="核对并缴费").click()
    expect(page.get_by_role("heading", name="核对缴费信息")).to_be_visible()
    expect(page.locator(".pay-confirm .pay-facts dd.pay-mono")).to_have_text(PAID_PLATE)
    confirm = page.locator(".pay-confirm-list")
    expect(confirm).to_contain_text(PAID["offence"])
    expect(confirm).to_contain_text(PAID["decision_number"])
    expect(confirm).not_to_contain_text(NOT_A_PERIOD)
    fits(page, PHONE["width"])
    shot(page, "04-confirm-zh-phone")
    # And pay with the sandbox
    page.get_by_role("button", name="立即缴费").click()
    page.get_by_role("button", name="模拟支付成功").click()
    expect(page.get_by_role("heading", name="缴费成功")).to_be_visible()
    page.get_by_role("link", name="查看电子收据").click()
    # Then the receipt shows the fine's decision, its time in the installation's zone, each
    # fact after a Chinese (full-width) colon
    expect(page.get_by_role("heading", name="电子缴费收据")).to_be_visible()
    receipt = page.locator("main table")
    for words in ("违法时间", PAID_TIME, PAID["offence"], PAID["place"], PAID["decision_number"]):
        expect(receipt).to_contain_text(str(words))
    for label, key in (
        ("违法行为", "offence"),
        ("违法地点", "place"),
        ("决定书编号", "decision_number"),
    ):
        expect(receipt).to_contain_text(f"{label}\uff1a{PAID[key]}")
    expect(receipt).not_to_contain_text(NOT_A_PERIOD)
    fits(page, PHONE["width"])
    shot(page, "05-receipt-zh-phone")
    # And the page its QR code leads to says it is genuine and shows the same decision
    page.locator(".verify a").first.click()
    expect(page.get_by_text("收据真实有效")).to_be_visible()
    listed = page.locator(".pay-facts .plain-list li")
    expect(listed).to_have_count(1)
    for words in (PAID["offence"], "违法时间", PAID_TIME, "违法地点", PAID["place"], "决定书编号"):
        expect(listed).to_contain_text(str(words))
    expect(listed).to_contain_text(str(PAID["decision_number"]))
    expect(listed).not_to_contain_text(NOT_A_PERIOD)
    fits(page, PHONE["width"])
    shot(page, "06-verify-zh-phone")
    verify_url = page.url
    page.context.close()
    # And so it does in English on a desktop
    context = chromium.new_context(viewport=DESKTOP, locale="en-US")
    desktop = context.new_page()
    desktop.goto(verify_url)
    expect(desktop.locator("html")).to_have_attribute("lang", "en")
    expect(desktop.get_by_role("heading", name="Verify a receipt")).to_be_visible()
    listed = desktop.locator(".pay-facts .plain-list li")
    for words in (PAID["offence"], "Offence time", PAID_TIME, "Offence place", "Decision number"):
        expect(listed).to_contain_text(str(words))
    expect(listed).not_to_contain_text(NOT_A_PERIOD)
    shot(desktop, "07-verify-en-desktop")
    context.close()
