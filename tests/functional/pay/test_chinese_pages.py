"""Chinese pages speak Chinese, and speak of money in yuan.

Every GET page of the application (taken from the application itself, as the authorization matrix
takes its routes, so that a page added later is walked without anyone remembering to), the
citizen's whole way (confirming ticked bills, the sandbox's checkout, a payment paid and one
failed, the receipt, its verification valid, unknown and tampered, finding a payment again), the
operators' confirmation steps (a refund, a refused refund, a settlement's preview and its
confirmation, a statement imported) and the error pages (404, 422, 429, 503) are opened in Chinese,
signed in as a platform administrator and as a Pay operator. What a person sees there (text, and
the ``title``, ``alt``, ``placeholder`` and ``aria-label`` they read or hear) fails the test if it
holds a run of three or more ASCII letters that is not a code (matched by its pattern) or one of a
few names, an amount in fen, or an amount not written as ``¥`` with two decimals.

The test has a database of its own and names what it seeds in Chinese, so that no other test's
English names and no factory's ``Test User`` reach the pages it reads; its identifiers (slugs,
user names, biller codes) are digits and single letters.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import PASSWORD, SYSTEM
from tests.factories.traffic import counts_csv
from tests.functional.core.test_authorization_matrix import walk_routes
from tests.functional.pay.test_pages import BASE_URL, bill_ids, hidden, pages_app, path_of
from tests.functional.web.helpers import HTML, Browser

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.identity.models import User
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind
from civicloud.pay import billing
from civicloud.pay.models import Biller, Payment
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.receipts import get_receipt_for_payment, receipt_verify_url
from civicloud.pay.schemas import BillerCreate
from civicloud.pay.web.views import beijing_now
from civicloud.store import service as store_service
from civicloud.store.context import StoreContext
from civicloud.traffic import evaluations as traffic_evaluations
from civicloud.traffic import networks as traffic_networks
from civicloud.traffic import plans as traffic_plans
from civicloud.traffic import sumo
from civicloud.traffic.network import read_network
from civicloud.traffic.optimize import Limits
from civicloud.web.admission import Admission

# --- what a Chinese page may show ----------------------------------------------------------------

#: Names a Chinese page shows on purpose, each for its reason.
ALLOWED = frozenset(
    {
        "civicloud",  # the product's name
        "Apache",  # the licence's name, in the footer
        "PDF",  # the receipt's printable file
        "JSON",  # the receipt's signed file
        "CSV",  # the files operators import and download
        "Excel",  # the spreadsheet files lists are downloaded as (the product's name)
        "testclient",  # the test client's name for itself, shown as a sign-in's browser (data)
        "API",  # what the API keys are for
        "URL",  # where a biller's notifications go
        "ICP",  # the site's ICP filing (备案), a Chinese term
        "PEM",  # the public key's file format
        "UTF",  # UTF-8, the encoding a CSV file must be in
        "YYYY",  # ISO 8601's notation of a date's format (YYYY-MM-DD), as Chinese forms write it
        "English",  # the language switch names the other language in itself (lang="en")
        # The S3 clients Store's key page names (products' names), and its binary units.
        "MinIO",
        "awscli",
        "boto",
        "rclone",
        "KiB",
        "MiB",
        "GiB",
        "TiB",
    }
)
#: A run of ASCII letters as long as a word.
WORD = re.compile(r"[A-Za-z]{3,}")
#: Codes, dropped (by their pattern) before words are looked for.
CODES = (
    re.compile(r"(?:https?:)?//[^\s<>\"']+"),  # URLs
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"\b[a-z]+(?::[\w.+-]+)+"),  # subjects and ledger accounts (user:…, provider:…)
    re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"),  # UUIDs
    re.compile(r"\bCC\d{8,}\b"),  # payments' trade numbers
    re.compile(r"\bRF[0-9A-Z]{8,}\b"),  # refunds' numbers
    re.compile(r"\bR\d{8}-[0-9A-Z]{4,}\b"),  # receipts' numbers
    re.compile(r"\bSB[0-9A-Z]{6,}\b"),  # the sandbox's own trade numbers
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"),  # ISO dates, times
    re.compile(r"(?<![\w/])/[\w.{}-]+(?:/[\w.{}-]+)*/?"),  # paths (the audit's requests)
    re.compile(r"\b[a-z]+(?:\.[a-z_]+)+\b"),  # permissions' and errors' names (pay.refund)
    re.compile(r"\b[a-z]+(?:_[a-z]+)+\b"),  # roles' names (pay_operator)
    re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b"),  # slugs and region codes (cn-dalian)
    re.compile(r"\bUTC[+-]\d{1,2}(?::\d{2})?"),  # the installation zone's offset
)
#: Amounts: written as yuan (¥1,234.50), never in fen.
IN_FEN = re.compile(r"\d[\d,.]*\s*(?:fen\b|分(?!钟|行|之|类|别|配|页|批|组))", re.IGNORECASE)
YUAN = re.compile(r"¥\s*-?[\d,.]+")
GOOD_YUAN = re.compile(r"¥-?(?:\d{1,3}(?:,\d{3})*)\.\d{2}")
YUAN_WORD = re.compile(r"\d[\d,.]*\s*元")
#: An ASCII full stop, comma or colon after Chinese text ("失败. 您的…").
ASCII_STOP = re.compile(r"[\u3400-\u9fff][.,;:!?](?=\s|$)")


class VisibleText(HTMLParser):
    """The text a person sees or hears, without scripts, styles and what is code or data
    (``code``, ``kbd``, ``samp``, ``.pay-mono``); ``skip`` names more (as ``tag.class``)."""

    SKIP_TAGS = frozenset({"script", "style", "code", "kbd", "samp", "template"})
    SKIP_CLASSES = frozenset({"pay-mono", "mono"})  # the receipt's own page says "mono"
    READ = ("title", "alt", "placeholder", "aria-label")
    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}
    )  # fmt: skip

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.skip = skip

    @property
    def skipping(self) -> bool:
        return any(skipped for _tag, skipped in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        skipped = (
            tag in self.SKIP_TAGS
            or bool(classes & self.SKIP_CLASSES)
            or any(f"{tag}.{c}" in self.skip for c in classes)
        )
        if not (self.skipping or skipped):
            for name in self.READ:
                if values.get(name):
                    self.parts.append(values[name] or "")
            if tag == "input" and values.get("type") in ("submit", "button", "reset"):
                self.parts.append(values.get("value") or "")  # a button's words
        if tag not in self.VOID:
            self.stack.append((tag, skipped))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def faults_in(
    html: str, data: tuple[str, ...] = (), skip: frozenset[str] = frozenset()
) -> list[str]:
    """English words, amounts in fen and amounts not in yuan in what ``html`` shows.

    ``data`` are values the test seeded that are identifiers (user names, slugs), dropped as
    codes are.
    """
    parser = VisibleText(skip)
    parser.feed(html)
    parser.close()
    faults: list[str] = []
    for part in parser.parts:
        text = part
        for code in CODES:
            text = code.sub(" ", text)
        for value in sorted(data, key=len, reverse=True):
            text = text.replace(value, " ")
        faults += [w for w in WORD.findall(text) if w not in ALLOWED]
        faults += [f"in fen: {m.group(0)}" for m in IN_FEN.finditer(text)]
        faults += [f"ASCII punctuation: {m.group(0)}" for m in ASCII_STOP.finditer(text)]
        faults += [f"not yuan: {m.group(0)}" for m in YUAN_WORD.finditer(text)]
        faults += [
            f"not yuan: {m.group(0)}"
            for m in YUAN.finditer(text)
            if not GOOD_YUAN.fullmatch(m.group(0).rstrip(".,"))
        ]
    return faults


# --- a world of its own, named in Chinese ---------------------------------------------------------


@dataclass(frozen=True)
class World:
    """A city with a water company whose one account has three open bills, and its people."""

    city_id: str
    biller_id: str
    account: str
    platform: str
    operator: str
    identifiers: tuple[str, ...]


ACCOUNT = "0411000001"


def number() -> str:
    """Digits enough to keep this test's identifiers unique."""
    return f"{uuid.uuid4().int % 10**10:010d}"


@pytest.fixture(scope="module")
def services(fresh_services: Callable[[], Services]) -> Services:
    """A database of this test's own: nothing seeded by another test reaches its pages."""
    return fresh_services()


@pytest.fixture(scope="module")
def app(services: Services) -> FastAPI:
    return pages_app(services)


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    n = number()
    names: list[str] = []

    def tenant(
        slug: str, zh: str, en: str, kind: TenantKind, parent: uuid.UUID | None
    ) -> uuid.UUID:
        names.append(slug)
        made = tenants.create_tenant(
            session=session,
            actor=SYSTEM,
            data=tenants.TenantCreate(
                slug=slug,
                name_zh=zh,
                name_en=en,
                kind=kind,
                parent_id=parent,
                region_code="cn-dalian" if parent is None else None,
            ),
        )
        return made.id

    def person(username: str, shown: str, home: uuid.UUID, role: str, at: uuid.UUID | None) -> str:
        names.append(username)
        user = identity.create_user(
            session=session,
            actor=SYSTEM,
            data=identity.UserCreate(
                username=username, display_name=shown, password=PASSWORD, tenant_id=home
            ),
            passwords=services.passwords,
        )
        roles.grant_role(
            session=session,
            actor=SYSTEM,
            data=roles.RoleBindingCreate(user_id=user.id, role_name=role, tenant_id=at),
        )
        return username

    with services.db.unit_of_work() as session:
        # English names are the records' own data in another language; seeded in Chinese here
        # so that a Chinese page showing one is not mistaken for an untranslated one.
        country = tenant(f"c{n}", "中华人民共和国", "中华人民共和国", TenantKind.COUNTRY, None)
        city = tenant(f"d{n}", "大连市", "大连市", TenantKind.CITY, country)
        agency = tenant(
            f"w{n}", "大连市供水有限公司", "大连市供水有限公司", TenantKind.AGENCY, city
        )
        names.append(f"w{n}")
        biller = billing.create_biller(
            session=session,
            actor=SYSTEM,
            data=BillerCreate(
                tenant_id=agency,
                code=f"w{n}",
                name_zh="大连市供水有限公司",
                name_en="大连市供水有限公司",
                category="water",
                account_pattern=r"\d{10}",
                settlement_bank="中国工商银行大连分行",
                settlement_account="6222020200112233445",
                settlement_account_name="大连市供水有限公司",
            ),
        )
        due = (beijing_now().date() + timedelta(days=20)).isoformat()
        billing.import_bills(
            session=session,
            actor=SYSTEM,
            biller_id=biller.id,
            rows=[
                {
                    "bill_number": f"B{n}{i}",
                    "account_number": ACCOUNT,
                    "payer_name": "张三丰",
                    "amount_fen": fen,
                    "period": "2026-10",
                    "due_date": due,
                }
                for i, fen in enumerate((12_345, 23_456, 5_000))
            ],
        )
        platform = person(f"p{n}", "平台管理员", country, "platform_admin", None)
        operator = person(f"o{n}", "缴费操作员", city, "pay_operator", city)
        return World(str(city), str(biller.id), ACCOUNT, platform, operator, tuple(names))


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


class Pages:
    """The pages read so far, and what was wrong on each."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.faults: dict[str, list[str]] = {}
        self.read = 0

    def report(self) -> str:
        return "\n".join(f"{where}: {found}" for where, found in self.faults.items())

    def check(
        self, where: str, response: httpx2.Response, skip: frozenset[str] = frozenset()
    ) -> httpx2.Response:
        assert response.status_code < 500 or response.status_code == 503, (where, response.text)
        assert '<html lang="zh-CN">' in response.text, where
        self.read += 1
        found = faults_in(response.text, self.world.identifiers, skip)
        if found:
            self.faults[where] = sorted(set(found))
        return response


def zh(path: str) -> str:
    return path + ("&" if "?" in path else "?") + "lang=zh"


# --- the citizen's way ------------------------------------------------------------------------


def walk_citizen(browser: Browser, world: World, pages: Pages, services: Services) -> str:
    """The citizen's way from the city to the receipt; returns the paid trade number."""
    client = browser.client
    biller = world.biller_id
    pages.check("choose", client.get(zh(f"/pay?city={world.city_id}")))
    pages.check("account", client.get(zh(f"/pay/billers/{biller}")))
    pages.check("account empty", client.get(zh(f"/pay/billers/{biller}/bills?account=")))
    pages.check("account malformed", client.get(zh(f"/pay/billers/{biller}/bills?account=12ab")))
    pages.check("no bills", client.get(zh(f"/pay/billers/{biller}/bills?account=9999999999")))
    bills = pages.check("bills", client.get(zh(f"/pay/billers/{biller}/bills?account={ACCOUNT}")))
    ids = bill_ids(bills.text)
    assert len(ids) == 3
    key = hidden(bills.text, "idempotency_key")
    form = {"account": ACCOUNT, "provider": "sandbox"}
    # one bill paid and failed at the sandbox
    failed_trade = pay(browser, world, pages, {**form, "idempotency_key": key}, ids[:1], "failed")
    pages.check("payment failed", client.get(zh(f"/pay/payments/{failed_trade}")))
    # two of the three ticked, confirmed, and paid
    again = client.get(zh(f"/pay/billers/{biller}/bills?account={ACCOUNT}"))
    form["idempotency_key"] = hidden(again.text, "idempotency_key")
    confirm = pages.check(
        "confirm",
        client.get(
            f"/pay/billers/{biller}/confirm", params={**form, "bill_id": ids[:2], "lang": "zh"}
        ),
    )
    assert "¥358.01" in confirm.text
    none_ticked = client.get(f"/pay/billers/{biller}/confirm", params={**form, "lang": "zh"})
    assert none_ticked.status_code == 422
    pages.check("confirm, nothing ticked", none_ticked)
    trade_no = pay(browser, world, pages, form, ids[:2], "succeeded")
    paid = pages.check("payment succeeded", client.get(zh(f"/pay/payments/{trade_no}")))
    assert "¥358.01" in paid.text
    with services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        receipt = get_receipt_for_payment(session=session, payment_id=payment.id)
        assert receipt is not None
        verify = urlsplit(receipt_verify_url(receipt, public_base_url=BASE_URL))
    pages.check("receipt", client.get(zh(f"/pay/receipts/{receipt.number}")))
    sig = parse_qs(verify.query)["sig"][0]
    valid = pages.check("verify valid", client.get(zh(f"{verify.path}?{verify.query}")))
    assert "pay-verify-valid" in valid.text
    unknown = pages.check(
        "verify unknown", client.get(zh("/pay/receipts/R20000101-0000AAAA/verify"))
    )
    assert "pay-verify-unknown" in unknown.text
    forged = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    tampered = pages.check("verify tampered", client.get(zh(f"{verify.path}?sig={forged}")))
    assert "pay-verify-tampered" in tampered.text
    pages.check("find", client.get(zh("/pay/find")))
    found = client.get(zh(f"/pay/find?trade_no={trade_no}"), follow_redirects=False)
    assert found.status_code == 303
    pages.check("find found", client.get(zh(path_of(found.headers["location"]))))
    missing = client.get(zh("/pay/find?trade_no=CC20000101000000000000"))
    assert missing.status_code == 404
    pages.check("find not found", missing)
    return trade_no


def pay(
    browser: Browser, world: World, pages: Pages, form: dict[str, str], ids: list[str], outcome: str
) -> str:
    """Pay ``ids`` at the sandbox's checkout with ``outcome``; returns the trade number."""
    sent = browser.client.post(
        f"/pay/billers/{world.biller_id}/bills",
        data={**form, "bill_id": ids, "csrf_token": browser.csrf()},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    checkout = path_of(sent.headers["location"])
    pages.check(f"checkout before {outcome}", browser.client.get(zh(checkout)))
    done = browser.submit(checkout, {"outcome": outcome})
    assert done.status_code == 303
    return checkout.rsplit("/", 1)[1]


# --- the operators' way ------------------------------------------------------------------------


def walk_refunds(browser: Browser, pages: Pages, payment_id: str) -> None:
    """A refund confirmed, then refusals: an ambiguous amount and more than is left."""
    page = browser.client.get(zh(f"/console/pay/payments/{payment_id}"))
    url = zh(f"/console/pay/payments/{payment_id}/refunds")
    form = {
        "amount": "10",
        "reason": "重复缴费",
        "idempotency_key": hidden(page.text, "idempotency_key"),
    }
    confirm = pages.check("refund confirmation", browser.submit(url, form))
    assert confirm.status_code == 200
    assert "¥10.00" in confirm.text
    done = browser.submit(url, form | {"confirm": "yes"})
    assert done.status_code == 303
    pages.check("refund done", browser.client.get(zh(path_of(done.headers["location"]))))
    again = browser.client.get(zh(f"/console/pay/payments/{payment_id}"))
    key = hidden(again.text, "idempotency_key")
    ambiguous = browser.submit(
        url, {"amount": "52,31", "reason": "重复缴费", "idempotency_key": key}
    )
    assert ambiguous.status_code == 422
    pages.check("refund ambiguous", ambiguous)
    refused = browser.submit(url, {"amount": "1000", "reason": "重复缴费", "idempotency_key": key})
    assert refused.status_code == 409
    assert "¥348.01" in refused.text
    pages.check("refund refused", refused)


def walk_settlement(browser: Browser, world: World, pages: Pages, day: date) -> None:
    """A settlement previewed and confirmed, and a day with nothing to settle refused."""
    url = zh("/console/pay/settlements")
    form = {"biller_id": world.biller_id, "business_date": day.isoformat()}
    pages.check(
        "settlements",
        browser.client.get(zh(f"/console/pay/settlements?biller_id={world.biller_id}")),
    )
    preview = pages.check("settlement preview", browser.submit(url, form))
    assert preview.status_code == 200
    done = browser.submit(
        url, form | {"confirm": "yes", "expected_net": hidden(preview.text, "expected_net")}
    )
    assert done.status_code == 303, done.text
    pages.check("settlement done", browser.client.get(zh(path_of(done.headers["location"]))))
    empty = browser.submit(url, {"biller_id": world.biller_id, "business_date": "2020-01-01"})
    assert empty.status_code == 409
    pages.check("nothing to settle", empty)
    bad = browser.submit(url, {"biller_id": "not-an-id", "business_date": day.isoformat()})
    assert bad.status_code == 422
    pages.check("settlement, bad form", bad)
    assert "地址" not in bad.text.split("<main", 1)[-1]  # a form's field is not in the address


def walk_reconciliation(
    browser: Browser, pages: Pages, sandbox: SandboxProvider, day: date, trade_no: str
) -> None:
    """A statement imported (one line unknown to us), and the same file refused."""
    statement = sandbox.statement(day).decode()
    unknown = f"CC{uuid.uuid4().int % 10**20:020d}"
    statement += f"{unknown},SBXFAKE0001,payment,777,{day.isoformat()}T10:00:00+08:00,\n"

    def send() -> httpx2.Response:
        return browser.client.post(
            zh("/console/pay/reconciliation"),
            data={"csrf_token": browser.csrf(), "provider": "sandbox", "business_date": str(day)},
            files={"file": ("statement.csv", statement.encode(), "text/csv")},
            follow_redirects=False,
        )

    imported = send()
    assert imported.status_code == 303, imported.text
    result = pages.check(
        "reconciliation result", browser.client.get(zh(path_of(imported.headers["location"])))
    )
    assert unknown in result.text
    refused = send()
    assert refused.status_code == 409
    pages.check("statement refused", refused)


def _junction_network() -> bytes:
    """A one-junction SUMO network, generated by netgenerate."""
    with tempfile.TemporaryDirectory() as folder:
        return sumo.generate("junction", Path(folder) / "junction.net.xml").read_bytes()


def user_id_of(services: Services, username: str) -> object:
    """The id of the user called ``username``."""
    with services.db.unit_of_work(write=False) as session:
        return session.scalars(select(User.id).where(User.username == username)).one()


def page_paths(app: FastAPI, values: dict[str, str]) -> list[str]:
    """Every GET page of ``app`` with its parameters filled in (files and APIs left out)."""
    paths = set()
    for _route, path, methods in walk_routes(app):
        if "GET" not in methods or path.startswith(("/api/", "/docs", "/openapi", "/static")):
            continue
        if path in ("/healthz", "/readyz", "/metrics") or path.endswith(
            (".pdf", ".json", ".pem", ".csv")
        ):
            continue
        paths.add(re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path))
    return sorted(paths)


#: The ledger's memos are written by the services in English when money moves ("payment
#: CC…"); they are data of the books, translated with the console's own rework, not here.
LEDGER_MEMOS = frozenset({"td.pay-ledger-memo"})


#: An audit record's data is shown as it was recorded (its keys are the services' own).
AUDIT_DATA = frozenset({"pre.audit-data"})


def walk_every_page(
    app: FastAPI, browser: Browser, pages: Pages, values: dict[str, str], who: str
) -> None:
    for route in page_paths(app, values):
        path = route + (f"?account={ACCOUNT}" if route.endswith("/bills") else "")
        response = browser.client.get(zh(path), follow_redirects=True)
        skip = LEDGER_MEMOS if path.startswith("/console/pay/ledger") else frozenset()
        if path.startswith("/console/audit/"):
            skip = AUDIT_DATA
        pages.check(f"{who} {path}", response, skip)


def test_every_chinese_page_speaks_chinese_and_yuan(
    app: FastAPI, browser: Browser, world: World, services: Services
) -> None:
    pages = Pages(world)
    context: PayContext = app.state.services.context("pay", PayContext)
    sandbox = context.providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    # given a citizen who pays two of three bills (after a first try that failed)
    trade_no = walk_citizen(browser, world, pages, services)
    with services.db.unit_of_work() as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        assert payment.finished_at is not None
        payment.finished_at -= timedelta(days=1)  # ended yesterday: a day to settle
        payment_id = str(payment.id)
        biller = session.get(Biller, payment.biller_id)
        assert biller is not None
        number = get_receipt_for_payment(session=session, payment_id=payment.id)
        assert number is not None
    # and a bucket of the city's, with a file, for Store's pages
    bucket = f"zh-{uuid.uuid4().hex[:12]}"
    store = app.state.services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        store_service.create_bucket(
            session=session,
            actor=Actor.system("tests"),
            context=store,
            name=bucket,
            tenant_id=uuid.UUID(world.city_id),
        )
    # and a road network of the city's, for Traffic's pages
    with services.db.unit_of_work() as session:
        network = traffic_networks.import_network(
            session=session,
            actor=Actor.system("tests"),
            tenant_id=uuid.UUID(world.city_id),
            name=f"zh-{uuid.uuid4().hex[:12]}",
            content=_junction_network(),
        )
        network_id = str(network.id)
        with tempfile.TemporaryDirectory() as folder:
            net_path = Path(folder) / "junction.net.xml"
            net_path.write_bytes(_junction_network())
            counts = counts_csv(read_network(net_path)).encode()
        plan = traffic_plans.draft_plan(
            session=session,
            actor=Actor.system("tests"),
            network_id=network.id,
            name="早高峰方案",
            counts=counts,
            limits=Limits(),
        )
        plan_id = str(plan.id)
        evaluation = traffic_evaluations.request_evaluation(
            session=session, actor=Actor.system("tests"), plan_id=plan.id, seeds=1, counts=counts
        )
        evaluation_id = str(evaluation.id)
    values = {
        "network_id": network_id,
        "plan_id": plan_id,
        "evaluation_id": evaluation_id,
        "bucket": bucket,
        "biller_id": world.biller_id,
        "payment_id": payment_id,
        "trade_no": trade_no,
        "number": number.number,
        "tenant_id": world.city_id,
        # the operator's own user page, and the first record of the audit log
        "user_id": str(user_id_of(services, world.operator)),
        "seq": "1",
    }
    yesterday = beijing_now().date() - timedelta(days=1)
    # when an operator refunds, settles and reconciles, and reads every page
    browser.client.cookies.clear()
    assert browser.sign_in(world.operator, PASSWORD).status_code == 303
    walk_refunds(browser, pages, payment_id)
    walk_settlement(browser, world, pages, yesterday)
    walk_every_page(app, browser, pages, values, "operator")
    # and the platform administrator reconciles, and reads every page too
    browser.client.cookies.clear()
    assert browser.sign_in(world.platform, PASSWORD).status_code == 303
    walk_reconciliation(browser, pages, sandbox, yesterday, trade_no)
    walk_every_page(app, browser, pages, values, "platform")
    # then nothing on them is English, in fen, or an amount not in yuan
    assert pages.read > 40
    assert pages.faults == {}, pages.report()


def test_error_pages_speak_chinese(
    app: FastAPI, browser: Browser, world: World, services: Services
) -> None:
    pages = Pages(world)
    client = browser.client
    # a page that does not exist, and a payment that does not
    for path in ("/nowhere", "/pay/payments/CC0000", f"/pay/billers/{uuid.uuid4()}"):
        missing = client.get(zh(path))
        assert missing.status_code == 404, path
        pages.check(f"404 {path}", missing)
    # an id in the address that is not one
    bad_id = client.get(zh("/pay/billers/not-a-uuid"))
    assert bad_id.status_code == 422
    pages.check("422 address", bad_id)
    assert "地址中的缴费单位不是有效的编号" in bad_id.text
    # a look-up past the limit of a client
    limited = pages_app(services, lookups_per_minute=1)
    with TestClient(limited, base_url=BASE_URL, headers=HTML) as other:
        url = zh(f"/pay/billers/{world.biller_id}/bills?account={ACCOUNT}")
        assert other.get(url).status_code == 200
        throttled = other.get(url)
        assert throttled.status_code == 429
        pages.check("429", throttled)
        find = other.get(zh("/pay/find?trade_no=CC20000101000000000000"))
        assert find.status_code == 429
        pages.check("429 find", find)
        # and the API's refusal says the same in Chinese, its wait a parameter
        api = other.get(
            f"/api/v1/pay/public/billers/{world.biller_id}/bills",
            params={"account": ACCOUNT},
            headers={"Accept": "application/json", "Accept-Language": "zh-CN"},
        )
        assert api.status_code == 429
        assert re.fullmatch(r"查询次数过多，请 \d+ 秒后重试", api.json()["detail"]), api.json()  # noqa: RUF001
    # a write while the only writer's slot is held
    busy = pages_app(services)
    busy.state.admission = Admission(writers=1, readers=2, wait_seconds=0.2, max_waiting=2)
    with TestClient(busy, base_url=BASE_URL, headers=HTML) as held_client:
        busy_browser = Browser(held_client)
        token = busy_browser.csrf()
        held, release = threading.Event(), threading.Event()

        async def hold_the_writer() -> None:
            async with busy.state.admission.slot(write=True):
                held.set()
                await anyio.to_thread.run_sync(release.wait)

        assert held_client.portal is not None
        held_client.portal.start_task_soon(hold_the_writer)
        try:
            assert held.wait(5)
            refused = held_client.post(
                zh(f"/pay/billers/{world.biller_id}/bills"),
                data={"account": ACCOUNT, "csrf_token": token},
                follow_redirects=False,
            )
            assert refused.status_code == 503, refused.text
            pages.check("503", refused)
        finally:
            release.set()
    assert pages.faults == {}, pages.report()


def test_api_problems_follow_accept_language(browser: Browser, world: World) -> None:
    # when the API is asked about a bad id in Chinese, then the detail is Chinese
    url = "/api/v1/pay/public/billers/not-a-uuid/bills"
    answer = browser.client.get(
        url,
        params={"account": ACCOUNT},
        headers={"Accept": "application/json", "Accept-Language": "zh-CN,zh;q=0.9"},
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "core.invalid_input"
    assert "缴费单位" in answer.json()["detail"]
    # and without Accept-Language it stays English
    plain = browser.client.get(
        url, params={"account": ACCOUNT}, headers={"Accept": "application/json"}
    )
    assert "Input should be a valid UUID" in plain.json()["detail"]


@pytest.mark.parametrize(
    ("html", "faults"),
    [
        ("<p>付款 payment</p>", ["payment"]),
        ("<p>未找到 Not found.</p>", ["Not", "found"]),
        ('<input placeholder="Search">', ["Search"]),
        ('<p title="Key">密钥</p>', ["Key"]),
        ("<p>金额 12345 分</p>", ["in fen: 12345 分"]),
        ("<p>金额 100 fen</p>", ["fen", "in fen: 100 fen"]),
        ("<p>¥1234.5</p>", ["not yuan: ¥1234.5"]),
        ("<p>已失败. 您的账单</p>", ["ASCII punctuation: 败."]),
        ("<p>12.00 元</p>", ["not yuan: 12.00 元"]),
        ('<p>交易号 CC202601010000000001 <span class="pay-mono">abc def</span></p>', []),
        ("<p>请在 15 分钟内完成 ¥1,234.50</p>", []),
        ("<script>var x = 'english';</script><code>python -m civicloud</code>", []),
        ('<a href="/english/path" class="link">首页</a>', []),
    ],
)
def test_the_walker_sees_what_a_person_sees(html: str, faults: list[str]) -> None:
    assert faults_in(html) == faults
