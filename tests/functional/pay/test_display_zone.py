"""Every time a citizen reads is in the installation's zone (``web.time_zone``), with its offset.

A traffic fine recorded at 2026-11-03 00:42 UTC is looked up, paid with the sandbox and its
receipt opened, on an installation in Berlin and on one with the default zone (Asia/Shanghai):
the bills page, the sandbox's checkout, the payment page, the receipt (HTML, and the PDF's text
by ``pdftotext``) and the verify page show the time in that zone followed by its offset
("UTC+1", "UTC+8"), never "Beijing time". What is a business rule stays China Standard Time:
the receipt number's date.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.pay import make_biller, make_bills, unlimited_payments
from tests.functional.pay.test_pages import BASE_URL, hidden, path_of
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.app import create_app
from civicloud.core.services import Services
from civicloud.pay import receipts
from civicloud.pay import web as pay_web
from civicloud.pay.models import Payment, Receipt

PLATE = "辽B7K2M9"
#: 2026-11-03 00:42 UTC: 01:42 in Berlin (UTC+1 in November), 08:42 in Shanghai.
DECISION: dict[str, Any] = {
    "decision_number": "2102261105000031",
    "offence_time": "2026-11-03T00:42:00Z",
    "place": "大连市中山区人民路与港湾街交叉口",
    "offence": "驾驶机动车违反道路交通信号灯通行",
    "points": 6,
}
OFFENCE_SHOWN = {
    "Europe/Berlin": "2026-11-03 01:42 UTC+1",
    "Asia/Shanghai": "2026-11-03 08:42 UTC+8",
}
BEIJING_WORDS = re.compile("北京时间|Beijing time")


def shown(moment: datetime, zone: str, *, seconds: bool = False, date: bool = True) -> str:
    """``moment`` as a person in ``zone`` reads it, with the zone's whole-hour offset."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(ZoneInfo(zone))
    offset = local.utcoffset() or timedelta(0)
    hours = int(offset.total_seconds()) // 3600
    shape = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return f"{local.strftime(shape)} UTC{hours:+d}"


def zoned_app(services: Services, zone: str) -> FastAPI:
    """Pay's pages on an installation whose zone is ``zone``."""
    settings = services.settings.model_copy(
        update={
            "web": services.settings.web.model_copy(update={"time_zone": zone}),
            "pay": services.settings.pay.model_copy(
                update={"public_base_url": BASE_URL, "lookups_per_minute": 10_000}
            ),
        }
    )
    app = create_app(services=services.with_settings(settings))
    app.include_router(pay_web.router)
    unlimited_payments(app)
    return app


@dataclass(frozen=True)
class Site:
    """A citizen's browser on an installation in ``zone``, and the fine's biller."""

    zone: str
    browser: Browser
    biller_id: uuid.UUID
    app: FastAPI


@pytest.fixture(params=["Europe/Berlin", "Asia/Shanghai"])
def site(request: pytest.FixtureRequest, core_services: Services) -> Iterator[Site]:
    zone: str = request.param
    with core_services.db.unit_of_work() as session:
        biller = make_biller(
            session,
            code=f"fines-{uuid.uuid4().hex[:8]}",
            name_zh="大连市公安局交通警察支队",
            name_en="Dalian Traffic Police",
            category="fine",
            account_pattern=r"辽B[A-Z0-9]{5}",
        )
        make_bills(session, biller, account_number=PLATE, period="2026-11", details=DECISION)
        biller_id = biller.id
    app = zoned_app(core_services, zone)
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Site(zone, Browser(client), biller_id, app)
    client.close()


def bills_page(site: Site, lang: str, browser: Browser | None = None) -> str:
    page = (browser or site.browser).client.get(
        f"/pay/billers/{site.biller_id}/bills", params={"account": PLATE, "lang": lang}
    )
    assert page.status_code == 200, page.text
    return page.text


def start_payment(site: Site, browser: Browser | None = None) -> Any:
    """Post the bills page's form (the fine, the sandbox); the response, not followed."""
    who = browser or site.browser
    page = bills_page(site, "zh", who)
    return who.client.post(
        f"/pay/billers/{site.biller_id}/bills",
        data={
            "idempotency_key": hidden(page, "idempotency_key"),
            "account": PLATE,
            "provider": "sandbox",
            "bill_id": re.findall(r'name="bill_id" value="([^"]+)"', page),
            "csrf_token": who.csrf(),
        },
        follow_redirects=False,
    )


def stored(services: Services, trade_no: str) -> tuple[Payment, Receipt | None]:
    with services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        receipt = receipts.get_receipt_for_payment(session=session, payment_id=payment.id)
        session.expunge_all()
        return payment, receipt


def pdf_text(pdf: bytes, tmp_path: Any) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("poppler-utils (pdftotext) is needed to read the PDF")
    path = tmp_path / "receipt.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return re.sub(r"\s+", " ", done.stdout)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_fine_s_offence_time_is_shown_in_the_installation_s_zone(site: Site, lang: str) -> None:
    # when the citizen looks up the plate
    text = text_of(bills_page(site, lang))
    # then the offence time is in the installation's zone, with its offset
    assert OFFENCE_SHOWN[site.zone] in text
    assert not BEIJING_WORDS.search(text)


def test_payment_receipt_and_verify_page_show_times_in_the_installation_s_zone(
    site: Site, core_services: Services, tmp_path: Any
) -> None:
    client = site.browser.client
    # given the citizen started paying the fine: the sandbox's checkout says until when
    started = start_payment(site)
    assert started.status_code == 303, started.text
    checkout = path_of(started.headers["location"])
    trade_no = checkout.rsplit("/", 1)[1]
    pending, _ = stored(core_services, trade_no)
    cashier = text_of(client.get(checkout, params={"lang": "en"}).text)
    assert shown(pending.expires_at, site.zone) in cashier
    # when they pay it
    paid = site.browser.submit(checkout, {"outcome": "succeeded"})
    assert paid.status_code == 303
    payment, receipt = stored(core_services, trade_no)
    assert receipt is not None
    assert payment.finished_at is not None
    body = receipts.receipt_body(receipt)
    paid_at, issued_at = (datetime.fromisoformat(body[k]) for k in ("paid_at", "issued_at"))
    # then the payment page shows when it finished, in the zone with its offset
    for lang in ("zh", "en"):
        result = text_of(client.get(f"/pay/payments/{trade_no}", params={"lang": lang}).text)
        assert shown(payment.finished_at, site.zone) in result
        assert not BEIJING_WORDS.search(result)
    # and the receipt, as a page and as a PDF, shows paid, issued and offence times so (and
    # the fine's facts after the language's colon)
    for lang in ("zh", "en"):
        page = text_of(client.get(f"/pay/receipts/{receipt.number}", params={"lang": lang}).text)
        pdf = pdf_text(
            client.get(f"/pay/receipts/{receipt.number}.pdf", params={"lang": lang}).content,
            tmp_path,
        )
        colon = "\uff1a" if lang == "zh" else ": "  # Chinese writes the full-width colon
        offence = "违法行为" if lang == "zh" else "Offence"
        for copy in (page, pdf):
            assert f"{offence}{colon}{DECISION['offence']}" in copy
            assert shown(paid_at, site.zone, seconds=True) in copy
            assert shown(issued_at, site.zone, seconds=True) in copy
            assert OFFENCE_SHOWN[site.zone] in copy
            assert not BEIJING_WORDS.search(copy)
    # and the verify page its QR code leads to
    verify_url = receipts.receipt_verify_url(receipt, public_base_url=BASE_URL)
    for lang in ("zh", "en"):
        verify = client.get(path_of(verify_url), params={"lang": lang})
        text = text_of(verify.text)
        assert "收据真实有效" in text or "genuine" in text
        assert shown(paid_at, site.zone) in text
        assert OFFENCE_SHOWN[site.zone] in text
        assert not BEIJING_WORDS.search(text)
    # while the receipt's number carries its China Standard Time day, whatever the zone
    cst_day = issued_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert receipt.number.startswith(f"R{cst_day}-")
