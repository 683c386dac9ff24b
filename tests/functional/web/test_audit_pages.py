"""The console's audit log on the list component: filters by outcome, tenant and days, sorting
and cursor pages, each record's detail view, CSV and Excel export of what is filtered, who is
told plainly they may not read it, and verifying the chains beside the request."""

from __future__ import annotations

import io
import re
from datetime import datetime
from html import unescape

import openpyxl
from tests.functional.web.helpers import Browser, World, text_of

from civicloud.core import audit, csvsafe
from civicloud.core.actor import Actor
from civicloud.core.services import Services


def listed(html: str) -> list[int]:
    """The numbers of the records a page lists, in its order."""
    return [
        int(seq)
        for seq in re.findall(
            r'<td data-label="[^"]*"><a href="/console/audit/(\d+)">\d+</a>', html
        )
    ]


def newest_seq(html: str) -> int:
    return listed(html)[0]


def links(html: str, rel: str) -> str | None:
    found = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    return unescape(found.group(1)) if found else None


def test_a_reader_without_the_audit_permission_is_told_so(browser: Browser, world: World) -> None:
    browser.sign_in("water.viewer")
    page = browser.client.get("/console/audit?lang=en")
    assert page.status_code == 403
    assert "You may not read the audit log" in text_of(page.text)
    assert "No records match" not in text_of(page.text)


def test_filters_by_outcome_tenant_and_days(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    # a refused post under Dalian (a slug that is taken) is a failed record there
    browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children",
        {"name_zh": "重复", "name_en": "Duplicate", "slug": "guiyang", "kind": "agency"},
    )
    failed = browser.client.get("/console/audit?lang=en&outcome=failed")
    assert failed.status_code == 200
    outcomes = set(re.findall(r'badge badge-(\w+)"', failed.text))
    assert outcomes == {"failed"}
    # the tenants offered are the ones the reader audits, by name; Guiyang is not among them
    assert "Dalian Water Supply" in failed.text
    assert "Guiyang" not in failed.text
    assert re.search(r"\b1 matches\.|\d+ match\.", text_of(failed.text))
    # a tenant one does not audit is refused plainly, not shown as an empty list
    tenant = browser.client.get(f"/console/audit?lang=en&tenant={world.tenants['guiyang']}")
    assert tenant.status_code == 403
    assert "You cannot see the audit records of this tenant." in text_of(tenant.text)
    assert "No records match" not in text_of(tenant.text)
    assert browser.client.get("/console/audit?tenant=not-a-tenant").status_code == 403
    # a tenant one audits holds its subtree's records
    water = browser.client.get(f"/console/audit?lang=en&tenant={world.tenants['dalian']}")
    assert water.status_code == 200
    assert listed(water.text)
    # days: today holds them, a range of long ago none, and bad input is said beside its field
    assert "No records match" in text_of(
        browser.client.get("/console/audit?lang=en&days_from=2001-01-01&days_to=2001-01-02").text
    )
    upside = browser.client.get("/console/audit?lang=en&days_from=2026-12-05&days_to=2026-12-01")
    assert upside.status_code == 422
    assert 'id="audit-days_to-error"' in upside.text
    bad = browser.client.get("/console/audit?lang=en&days_from=2026-13-01")
    assert bad.status_code == 422
    assert 'id="audit-days_from-error"' in bad.text
    unknown = browser.client.get("/console/audit?lang=en&outcome=maybe")
    assert unknown.status_code == 422
    assert 'id="audit-outcome-error"' in unknown.text


def test_export_is_exactly_what_is_filtered(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get("/console/audit?lang=en&action=core.session")
    shown = [str(seq) for seq in listed(page.text)]
    assert shown
    exported = browser.client.get("/console/audit?lang=en&action=core.session&format=csv")
    assert exported.status_code == 200
    rows = csvsafe.read_csv(exported.content)
    assert rows[0][:5] == ["No.", "Time (Asia/Shanghai)", "Actor", "Via", "Action"]
    assert "Reason" in rows[0]
    assert "Hash" in rows[0]
    assert [row[0] for row in rows[1:]][: len(shown)] == shown
    assert {row[4].split(".")[1] for row in rows[1:]} == {"session"}
    # the export is in the page's language
    chinese = csvsafe.read_csv(
        browser.client.get("/console/audit?lang=zh&action=core.session&format=csv").content
    )
    assert chinese[0][:3] == ["编号", "时间 (Asia/Shanghai)", "操作人"]


def test_excel_export_keeps_numbers_and_times_typed(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get("/console/audit?lang=en&outcome=success")
    shown = listed(page.text)
    response = browser.client.get("/console/audit?lang=en&outcome=success&format=xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert 'filename="audit-' in response.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert header[:2] == ["No.", "Time (Asia/Shanghai)"]
    outcome = header.index("Outcome")
    body = rows[1:]
    # the same records in the same order, numbers as numbers, times as times, words translated
    assert [row[0] for row in body][: len(shown)] == shown
    assert all(isinstance(row[1], datetime) for row in body)
    assert {row[outcome] for row in body} == {"Succeeded"}


def test_sorting_and_cursor_pages(browser: Browser, world: World, services: Services) -> None:
    # given more records than a page holds, of several actions
    with services.db.unit_of_work() as session:
        for index in range(60):
            audit.record(
                session=session,
                actor=Actor(kind="user", name="dalian.admin", via="session"),
                action=("tests.sort.b", "tests.sort.a", "tests.sort.c")[index % 3],
                target=f"thing:{index}",
                tenant_id=world.tenants["dalian"],
            )
    browser.sign_in("admin")
    newest = listed(browser.client.get("/console/audit?lang=en&size=25").text)
    assert newest == sorted(newest, reverse=True)
    # oldest first, by number
    oldest = listed(browser.client.get("/console/audit?lang=en&size=25&dir=asc").text)
    assert oldest == sorted(oldest)
    assert oldest[-1] < newest[-1]
    # by action: the codes in order, and the sort links say which way the list is sorted
    by_action = browser.client.get("/console/audit?lang=en&sort=action&dir=asc&size=200")
    assert by_action.status_code == 200
    actions = re.findall(r'data-label="Action"><code>([^<]+)</code>', by_action.text)
    assert actions == sorted(actions)
    assert 'aria-sort="ascending"' in by_action.text
    # a sort that is not offered falls back to the newest first
    assert listed(browser.client.get("/console/audit?lang=en&size=25&sort=hash").text) == newest
    # the next page follows on with no record twice, and the previous one comes back
    first = browser.client.get("/console/audit?lang=en&size=25")
    following = links(first.text, "next")
    assert following is not None
    assert "cursor=" in following
    second = browser.client.get(following)
    assert listed(second.text)
    assert max(listed(second.text)) < min(listed(first.text))
    back = links(second.text, "prev")
    assert back is not None
    assert listed(browser.client.get(back).text) == listed(first.text)


def test_a_records_detail_view(browser: Browser, world: World, services: Services) -> None:
    # given a record under Dalian whose data holds markup and Chinese, and a reason
    with services.db.unit_of_work() as session:
        audit.record(
            session=session,
            actor=Actor(kind="user", name="dalian.admin", via="session"),
            action="tests.detail",
            target="tenant:detail-view",
            tenant_id=world.tenants["dalian"],
            detail={"note": "<b>详情</b>", "reason": "市民重复缴费"},
        )
    browser.sign_in("dalian.admin")
    seq = newest_seq(browser.client.get("/console/audit?action=tests.detail").text)
    page = browser.client.get(f"/console/audit/{seq}?lang=en")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "tenant:detail-view" in text
    assert "dalian.admin" in text
    # the data is shown readably and escaped
    assert "&lt;b&gt;详情&lt;/b&gt;" in page.text
    assert "<b>详情</b>" not in page.text
    # its reason, how the actor came, its chain and whether it verifies
    assert "市民重复缴费" in page.text
    assert "session" in text
    assert re.search(r'id="audit-verifies"><span class="badge badge-success">', page.text)
    # another subtree's administrator does not find it
    browser.client.cookies.clear()
    browser.sign_in("guiyang.admin")
    assert browser.client.get(f"/console/audit/{seq}").status_code == 404


def test_verifying_is_for_platform_auditors_and_runs_beside_the_request(
    browser: Browser, world: World, app: object, services: Services
) -> None:
    browser.sign_in("dalian.admin")
    assert "verify-start" not in browser.client.get("/console/audit").text
    assert browser.client.get("/console/audit/verify").status_code == 403
    browser.client.cookies.clear()
    browser.sign_in("admin")
    assert "verify-start" in browser.client.get("/console/audit").text
    started = browser.submit("/console/audit/verify")
    assert started.status_code == 303
    verifier: audit.Verifier = browser.client.app.state.audit_verifier  # type: ignore[attr-defined]
    assert verifier.current is not None
    assert verifier.current.done.wait(120)
    page = browser.client.get("/console/audit/verify?lang=en")
    assert page.status_code == 200
    assert "The log is intact" in text_of(page.text)
    assert verifier.current.result is not None
    assert verifier.current.result.ok
