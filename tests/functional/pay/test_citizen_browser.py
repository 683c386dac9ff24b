"""What a citizen sees paying in Chromium: the sum as bills are ticked (and, without JavaScript,
on the confirmation step), the receipt as a page and as a PDF, the home page on a phone, and the
demo on a port other than 8000.

Uses the Dalian site of ``test_pay_browser`` (water account 0411000001 has an overdue bill of
86.50 yuan plus its late fee and one of 73.20 yuan). Screenshots go to
``test-artifacts/screenshots/citizen-*.png``; the PDF receipt is rendered to PNG there too when
poppler's ``pdftoppm`` is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, ViewportSize, expect
from tests.functional.live_server import free_port
from tests.functional.pay.test_pay_browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    SHOTS,
    Site,
    chromium,
    fits,
    site,
)

__all__ = ["chromium", "site"]  # the fixtures shared with test_pay_browser

CLI = [sys.executable, "-c", "from civicloud.cli import main; main()"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"citizen-{name}.png"), full_page=True)


def yuan(text: str) -> int:
    """Fen from the first ``¥1,234.56`` or ``CNY 1,234.56`` in ``text``."""
    found = re.search(r"(?:¥|CNY )([\d,]+)\.(\d\d)", text)
    assert found, text
    return int(found.group(1).replace(",", "")) * 100 + int(found.group(2))


def open_bills(page: Page, base: str, account: str, lang: str) -> None:
    page.goto(f"{base}/pay?lang={lang}")
    page.get_by_role(
        "link", name="大连市供水有限公司" if lang == "zh" else "Dalian Water Supply"
    ).click()
    page.get_by_label("户号" if lang == "zh" else "Customer account number").fill(account)
    page.get_by_role("button", name="查询账单" if lang == "zh" else "Find my bills").click()


WORDS = {
    "zh": {"check": "核对并缴费", "confirm": "核对缴费信息", "pay": "立即缴费", "paid": "缴费成功"},
    "en": {
        "check": "Check and pay",
        "confirm": "Check your payment",
        "pay": re.compile(r"^Pay .+ now$"),
        "paid": "Payment successful",
    },
}


@pytest.mark.parametrize(
    ("lang", "viewport"), [("zh", PHONE), ("en", DESKTOP)], ids=["zh-phone", "en-desktop"]
)
def test_the_sum_follows_the_ticks_on_the_page_and_the_button(
    chromium: Chromium, site: Site, lang: str, viewport: ViewportSize
) -> None:
    words = WORDS[lang]
    context = chromium.new_context(viewport=viewport, locale="zh-CN" if lang == "zh" else "en-US")
    page = context.new_page()
    # given the two open bills of an account, both ticked
    open_bills(page, site.url, "0411000001", lang)
    bills = page.locator(".pay-bill")
    expect(bills).to_have_count(2)
    first, second = (yuan(bills.nth(i).locator(".pay-bill-total").inner_text()) for i in (0, 1))
    total = page.locator("[data-pay-total]")
    button = page.locator("[data-pay-button]")
    expect(page.locator("[data-pay-static]")).to_be_hidden()
    assert yuan(total.inner_text()) == first + second
    assert yuan(button.inner_text()) == first + second
    # when the first is unticked
    bills.first.locator("input[type=checkbox]").uncheck()
    # then the sum and the button say what is left to pay
    expect(page.locator(".pay-sum-count")).to_contain_text("1")
    assert yuan(total.inner_text()) == second
    assert yuan(button.inner_text()) == second
    fits(page, viewport["width"])
    shot(page, f"01-ticked-{lang}")
    # and the confirmation step repeats it, on its button too, and pays that
    button.click()
    expect(page.get_by_role("heading", name=words["confirm"])).to_be_visible()
    pay = page.get_by_role("button", name=words["pay"])
    assert yuan(pay.inner_text()) == second
    fits(page, viewport["width"])
    shot(page, f"02-confirm-{lang}")
    pay.click()
    assert yuan(page.locator(".pay-amount").inner_text()) == second
    # (failed at the sandbox: the bills stay open for the other language's run)
    page.get_by_role("button", name="模拟支付失败" if lang == "zh" else "Fail the payment").click()
    expect(page.locator(".pay-result-reason")).to_be_visible()
    context.close()


@pytest.mark.parametrize(
    ("lang", "viewport"), [("zh", PHONE), ("en", DESKTOP)], ids=["zh-phone", "en-desktop"]
)
def test_without_javascript_the_confirmation_step_shows_the_sum(
    chromium: Chromium, site: Site, lang: str, viewport: ViewportSize
) -> None:
    words = WORDS[lang]
    context = chromium.new_context(
        viewport=viewport,
        locale="zh-CN" if lang == "zh" else "en-US",
        java_script_enabled=False,
    )
    page = context.new_page()
    # given the bills page without its script: no sum that could be stale, a note instead
    open_bills(page, site.url, "0411000002", lang)
    expect(page.locator("[data-pay-live]")).to_be_hidden()
    expect(page.locator("[data-pay-static]")).to_be_visible()
    amount = yuan(page.locator(".pay-bill-total").first.inner_text())
    shot(page, f"03-nojs-bills-{lang}")
    # when the citizen goes on
    page.get_by_role("button", name=words["check"]).click()
    # then the confirmation step shows the sum and the button pays it
    expect(page.get_by_role("heading", name=words["confirm"])).to_be_visible()
    assert yuan(page.locator(".pay-sum").inner_text()) == amount
    pay = page.get_by_role("button", name=words["pay"])
    assert yuan(pay.inner_text()) == amount
    fits(page, viewport["width"])
    shot(page, f"04-nojs-confirm-{lang}")
    context.close()


def pdf_words(pdf: Path) -> list[tuple[str, float, float, float]]:
    """Each word of the PDF with its left, right and top (pdftotext -bbox)."""
    out = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return [
        (html_word, float(x0), float(x1), float(y0))
        for x0, y0, x1, html_word in re.findall(
            r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">([^<]+)</word>', out
        )
    ]


@pytest.mark.parametrize(
    ("lang", "viewport", "biller", "account", "payer", "bill_number"),
    [
        ("zh", PHONE, "国网大连供电公司", "041100000003", "赵*", "POWER-202611-000001"),
        ("en", DESKTOP, "Dalian Water Supply", "0411000002", "L****i", "WATER-202611-000002"),
    ],
    ids=["zh-phone", "en-desktop"],
)
def test_the_receipt_is_laid_out_for_citizens(
    chromium: Chromium,
    site: Site,
    tmp_path: Path,
    lang: str,
    viewport: ViewportSize,
    biller: str,
    account: str,
    payer: str,
    bill_number: str,
) -> None:
    words = WORDS[lang]
    context = chromium.new_context(
        viewport=viewport, locale="zh-CN" if lang == "zh" else "en-US", accept_downloads=True
    )
    page = context.new_page()
    # given a paid bill
    page.goto(f"{site.url}/pay?lang={lang}")
    page.get_by_role("link", name=biller).click()
    page.locator("#pay-account").fill(account)
    page.locator("#pay-account").press("Enter")
    page.get_by_role("button", name=words["check"]).click()
    page.get_by_role("button", name=words["pay"]).click()
    page.get_by_role("button", name="模拟支付成功" if lang == "zh" else "Pay successfully").click()
    expect(page.get_by_role("heading", name=words["paid"])).to_be_visible()
    trade_no = page.url.rsplit("/", 1)[1]
    # when the citizen opens the receipt
    page.get_by_role("link", name="查看电子收据" if lang == "zh" else "View the receipt").click()
    # then it has a way back, a PDF button, the payer (masked), the issuer, a QR code to verify
    body = page.locator("body")
    expect(
        page.get_by_role("link", name="返回缴费结果" if lang == "zh" else "Back to the payment")
    ).to_have_attribute("href", f"/pay/payments/{trade_no}")
    pdf_link = page.get_by_role("link", name="下载 PDF" if lang == "zh" else "Download PDF")
    expect(pdf_link).to_be_visible()
    expect(page.locator(".facts")).to_contain_text(payer)
    expect(body).to_contain_text("城市政务云" if lang == "zh" else "City Government Cloud")
    expect(page.locator(".verify svg")).to_be_visible()
    expect(body).to_contain_text("不是财政票据" if lang == "zh" else "not a fiscal bill")
    # and no signature or command shows until a verifier opens the details
    expect(page.get_by_text("python -m")).to_be_hidden()
    expect(page.locator(".signature .mono").nth(1)).to_be_hidden()
    fits(page, viewport["width"])
    shot(page, f"05-receipt-{lang}")
    page.locator(".signature summary").click()
    expect(page.get_by_text("python -m")).to_be_visible()
    shot(page, f"06-receipt-details-{lang}")
    # and the PDF's table columns do not run into each other, the amount heading over its column
    answer = page.request.get(site.url + pdf_link.get_attribute("href"))  # type: ignore[operator]
    assert answer.headers["content-type"] == "application/pdf"
    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(answer.body())
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        pytest.fail("poppler-utils (pdftoppm, pdftotext) is needed to look at the PDF")
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "110",
            "-singlefile",
            str(pdf),
            str(SHOTS / f"citizen-07-pdf-{lang}"),
        ],
        check=True,
    )
    found = pdf_words(pdf)
    number = next(w for w in found if w[0] == bill_number)
    account = next(w for w in found if "****" in w[0] and abs(w[3] - number[3]) < 2)
    assert number[2] + 1 < account[1], (number, account)
    heading = next(w for w in found if w[0] in ("金额", "Amount") and w[3] < number[3])
    amount = next(
        w
        for w in found
        if re.fullmatch(r"(¥|CNY)?[\d,]+\.\d\d", w[0]) and abs(w[3] - number[3]) < 2
    )
    assert abs(heading[2] - amount[2]) < 1.5, (heading, amount)
    assert not any("python" in w[0] for w in found)
    context.close()


@pytest.mark.parametrize(
    ("lang", "pay", "staff"),
    [("zh", "缴纳账单", "政务工作人员入口"), ("en", "Pay a bill", "For government staff")],
)
def test_the_home_page_puts_paying_first_on_a_phone(
    chromium: Chromium, site: Site, lang: str, pay: str, staff: str
) -> None:
    context = chromium.new_context(viewport=PHONE, locale="zh-CN" if lang == "zh" else "en-US")
    page = context.new_page()
    page.goto(f"{site.url}/?lang={lang}")
    button = page.locator(".hero-citizen").get_by_role("link", name=pay)
    staff_heading = page.get_by_role("heading", name=staff)
    # the citizen's way in is on the first screen, the staff's after everything else
    box, staff_box = button.bounding_box(), staff_heading.bounding_box()
    assert box is not None
    assert staff_box is not None
    assert box["y"] + box["height"] <= PHONE["height"], box
    assert staff_box["y"] > box["y"] + PHONE["height"]
    fits(page, PHONE["width"])
    shot(page, f"08-home-phone-{lang}")
    button.click()
    expect(page).to_have_url(re.compile(r"/pay$"))
    context.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``civicloud demo --port P`` on a free port other than 8000, as the README says to run it."""
    port = free_port()
    data = tmp_path_factory.mktemp("demo-port")
    process = subprocess.Popen(
        [*CLI, "demo", "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"civicloud demo exited early: {process.communicate()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("civicloud demo did not answer in time")
                time.sleep(0.2)  # polling: the demo is still seeding or starting
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("lang", "viewport"), [("zh", PHONE), ("en", DESKTOP)], ids=["zh-phone", "en-desktop"]
)
def test_the_demo_on_another_port_pays_as_printed(
    chromium: Chromium, demo: int, lang: str, viewport: ViewportSize
) -> None:
    words = WORDS[lang]
    context = chromium.new_context(viewport=viewport, locale="zh-CN" if lang == "zh" else "en-US")
    page = context.new_page()
    # given the demo opened where it says (localhost:P): no address notice
    base = f"http://localhost:{demo}"
    open_bills(page, base, "0411000001", lang)
    expect(page.locator(".pay-address-notice")).to_have_count(0)
    # when the citizen checks and pays
    page.get_by_role("button", name=words["check"]).click()
    page.get_by_role("button", name=words["pay"]).click()
    # then the sandbox's checkout opens (this used to do nothing on any port but 8000)
    expect(
        page.get_by_role("heading", name="收银台" if lang == "zh" else "Checkout")
    ).to_be_visible()
    assert page.url.startswith(f"{base}/pay/sandbox/checkout/")
    page.get_by_role("button", name="模拟支付失败" if lang == "zh" else "Fail the payment").click()
    expect(page.locator(".pay-result-reason")).to_be_visible()
    shot(page, f"09-demo-port-failed-{lang}")
    # and opened at 127.0.0.1:P instead, the page explains the difference, and paying works
    open_bills(page, f"http://127.0.0.1:{demo}", "0411000001", lang)
    notice = page.locator(".pay-address-notice")
    expect(notice).to_contain_text(base)
    expect(notice).to_contain_text(f"http://127.0.0.1:{demo}")
    fits(page, viewport["width"])
    shot(page, f"10-demo-address-notice-{lang}")
    page.get_by_role("button", name=words["check"]).click()
    page.get_by_role("button", name=words["pay"]).click()
    expect(
        page.get_by_role("heading", name="收银台" if lang == "zh" else "Checkout")
    ).to_be_visible()
    if lang == "zh":  # the account's bills stay open for the English run, which pays them
        page.get_by_role("button", name="模拟支付失败").click()
        expect(page.locator(".pay-result-reason")).to_be_visible()
    else:
        page.get_by_role("button", name="Pay successfully").click()
        expect(page.get_by_role("heading", name=words["paid"])).to_be_visible()
    context.close()
