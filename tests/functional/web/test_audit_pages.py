"""The console's audit log: filters by outcome, tenant and days, each record's detail view,
CSV export of what is filtered, who is told plainly they may not read it, and verifying the
chains beside the request."""

from __future__ import annotations

import re

from tests.functional.web.helpers import Browser, World, text_of

from civicloud.core import audit, csvsafe
from civicloud.core.actor import Actor
from civicloud.core.services import Services


def newest_seq(html: str) -> int:
    return int(re.findall(r"<tr>\s*<td>(\d+)</td>", html)[0])


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
    assert "Guiyang" not in failed.text
    assert "records match" in text_of(failed.text)
    tenant = browser.client.get(f"/console/audit?tenant={world.tenants['guiyang']}")
    assert tenant.status_code == 404
    # days: today holds them, a range of long ago none, and bad input is said beside its field
    assert "No records match" in text_of(
        browser.client.get("/console/audit?lang=en&from=2001-01-01&to=2001-01-02").text
    )
    upside = browser.client.get("/console/audit?lang=en&from=2026-12-05&to=2026-12-01")
    assert upside.status_code == 422
    assert 'id="audit-to-error"' in upside.text
    bad = browser.client.get("/console/audit?lang=en&from=2026-13-01")
    assert bad.status_code == 422
    assert 'id="audit-from-error"' in bad.text
    unknown = browser.client.get("/console/audit?lang=en&outcome=maybe")
    assert unknown.status_code == 422


def test_export_is_exactly_what_is_filtered(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get("/console/audit?action=core.session")
    shown = re.findall(r"<tr>\s*<td>(\d+)</td>", page.text)
    exported = browser.client.get("/console/audit?action=core.session&format=csv")
    assert exported.status_code == 200
    rows = csvsafe.read_csv(exported.content)
    assert rows[0][0] == "seq"
    assert [row[0] for row in rows[1:]][: len(shown)] == shown
    assert {row[4].split(".")[1] for row in rows[1:]} == {"session"}


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
