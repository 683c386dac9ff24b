"""The operator console: the tenant tree, tenant pages and their forms, users, roles, keys, audit."""

from __future__ import annotations

import re

from tests.functional.web.helpers import Browser, World, text_of

from civicloud.core import audit, tenants
from civicloud.core.actor import Actor
from civicloud.core.services import Services


def test_overview_shows_who_i_am_and_my_roles(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = text_of(browser.client.get("/console?lang=en").text)
    assert "Operator console" in page
    assert "dalian.admin" in page
    assert "Tenant administrator" in page
    assert "Dalian and everything below it" in page


def test_tenant_tree_shows_only_the_callers_subtree(browser: Browser, world: World) -> None:
    # Given an administrator bound in Dalian
    browser.sign_in("dalian.admin")
    # When they open the tenant tree in Chinese
    page = browser.client.get("/console/tenants?lang=zh")
    # Then Dalian and what is below it are there, nested, with kind badges and regions
    text = text_of(page.text)
    assert "大连市" in text
    assert "大连市供水有限公司" in text
    assert "市级" in text
    assert "机构" in text
    assert "cn-dalian" in text
    assert re.search(r"大连市</a>.*?<ul class=\"tree\">.*?大连市供水有限公司", page.text, re.S)
    # And nothing outside it
    for hidden in ("贵阳", "贵州", "辽宁", "中华人民共和国"):
        assert hidden not in text


def test_tenant_tree_uses_the_page_language(browser: Browser, world: World) -> None:
    browser.sign_in("admin")
    text = text_of(browser.client.get("/console/tenants?lang=en").text)
    for name in ("China", "Liaoning Province", "Dalian Water Supply", "Guiyang"):
        assert name in text
    assert "大连市" not in text


def test_tenant_page_shows_breadcrumbs_children_users_and_bindings(
    browser: Browser, world: World
) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get(f"/console/tenants/{world.tenants['dalian']}?lang=en")
    assert page.status_code == 200
    text = text_of(page.text)
    # Breadcrumbs stop at the caller's own root: Liaoning and China are not its to see
    crumbs = text_of(page.text.split('aria-label="Breadcrumb"', 1)[1].split("</nav>", 1)[0])
    assert "Tenants" in crumbs
    assert "Liaoning" not in crumbs
    assert "Dalian Water Supply" in text
    assert "lock.test" in text
    assert "Create a tenant below this one" in text
    assert "Rename this tenant" in text


def test_tenant_page_breadcrumbs_lead_back_up(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get(f"/console/tenants/{world.tenants['dalian-water']}?lang=en")
    crumbs = page.text.split('aria-label="Breadcrumb"', 1)[1].split("</nav>", 1)[0]
    assert f'href="/console/tenants/{world.tenants["dalian"]}"' in crumbs
    assert 'aria-current="page"' in crumbs


def test_viewer_sees_the_tenant_but_no_forms(browser: Browser, world: World) -> None:
    browser.sign_in("water.viewer")
    page = browser.client.get(f"/console/tenants/{world.tenants['dalian-water']}?lang=en")
    assert page.status_code == 200
    assert "Create a tenant below this one" not in page.text
    assert "/rename" not in page.text


def test_a_tenant_outside_the_subtree_is_not_found(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get(f"/console/tenants/{world.tenants['guiyang']}?lang=zh")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text
    assert "页面不存在" in page.text
    assert "贵阳" not in page.text


def test_create_a_child_tenant_through_the_form(
    browser: Browser, world: World, services: Services
) -> None:
    # Given an administrator on Dalian's page
    browser.sign_in("dalian.admin")
    dalian = world.tenants["dalian"]
    # When they fill in the form to create a tenant below it
    response = browser.submit(
        f"/console/tenants/{dalian}/children",
        {
            "name_zh": "大连市交通运输局",
            "name_en": "Dalian Transport Bureau",
            "slug": "dalian-transport",
            "kind": "agency",
            "region_code": "",
        },
    )
    # Then they are sent (303) to the new tenant's page, which confirms it
    assert response.status_code == 303
    page = browser.client.get(response.headers["location"] + "&lang=en")
    assert "Dalian Transport Bureau" in page.text
    assert "The tenant was created." in page.text
    # And the tenant exists below Dalian, in Dalian's region
    with services.db.unit_of_work(write=False) as session:
        created = tenants.get_tenant_by_slug(session=session, slug="dalian-transport")
        assert created is not None
        assert created.parent_id == dalian
        assert created.region_code == "cn-dalian"


def test_invalid_child_is_shown_again_with_the_problem(
    browser: Browser, world: World, services: Services
) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children?lang=en",
        {"name_zh": "坏", "name_en": "Bad", "slug": "Not A Slug!", "kind": "agency"},
    )
    assert response.status_code == 422
    text = text_of(response.text)
    assert "Please correct the following" in text
    assert "lowercase letters, digits and hyphens" in text
    assert 'value="Not A Slug!"' in response.text
    assert 'aria-invalid="true"' in response.text
    with services.db.unit_of_work(write=False) as session:
        assert tenants.get_tenant_by_slug(session=session, slug="not-a-slug") is None


def test_a_taken_slug_is_a_conflict_on_the_form(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children",
        {"name_zh": "重复", "name_en": "Duplicate", "slug": "guiyang", "kind": "agency"},
    )
    assert response.status_code == 409
    assert "该标识已被占用" in response.text


def test_a_refused_form_post_is_audited_as_failed(
    browser: Browser, world: World, services: Services
) -> None:
    # given an administrator whose form the service refuses (a slug that is taken)
    browser.sign_in("dalian.admin")
    response = browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children",
        {"name_zh": "重复", "name_en": "Duplicate", "slug": "guiyang", "kind": "agency"},
    )
    assert response.status_code == 409
    # then the attempt is in the audit log, as the administrator's, with its outcome
    with services.db.unit_of_work(write=False) as session:
        newest = audit.list_records(session=session, actor=Actor.system("test"), limit=1)[0]
    assert (newest.actor, newest.outcome, newest.detail["status"]) == (
        "dalian.admin",
        "failed",
        409,
    )
    assert newest.target.endswith("/children")


def test_a_kind_that_cannot_sit_there_is_refused_on_the_form(
    browser: Browser, world: World
) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children",
        {"name_zh": "省", "name_en": "Province", "slug": "wrong-kind", "kind": "province"},
    )
    assert response.status_code == 422
    assert "操作未完成" in response.text


def test_form_post_without_csrf_token_changes_nothing(
    browser: Browser, world: World, services: Services
) -> None:
    browser.sign_in("dalian.admin")
    response = browser.client.post(
        f"/console/tenants/{world.tenants['dalian']}/children",
        data={"name_zh": "无", "name_en": "None", "slug": "no-token", "kind": "agency"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    with services.db.unit_of_work(write=False) as session:
        assert tenants.get_tenant_by_slug(session=session, slug="no-token") is None


def test_rename_a_tenant(browser: Browser, world: World) -> None:
    browser.sign_in("guiyang.admin")
    guiyang = world.tenants["guiyang"]
    page = browser.client.get(f"/console/tenants/{guiyang}")
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version
    response = browser.submit(
        f"/console/tenants/{guiyang}/rename",
        {"name_zh": "贵阳市人民政府", "name_en": "Guiyang Municipality", "version": version[1]},
    )
    assert response.status_code == 303
    assert "贵阳市人民政府" in browser.client.get(response.headers["location"]).text
    # A second save from the same, now stale, page is refused
    stale = browser.submit(
        f"/console/tenants/{guiyang}/rename",
        {"name_zh": "旧页面", "name_en": "Stale page", "version": version[1]},
    )
    assert stale.status_code == 409


def test_users_page_lists_and_creates_users(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = text_of(browser.client.get("/console/users?lang=en").text)
    assert "lock.test" in page
    assert "water.viewer" in page
    assert "guiyang.admin" not in page
    response = browser.submit(
        "/console/users",
        {
            "username": "new.operator",
            "display_name": "赵敏",
            "email": "zhao@example.gov.cn",
            "password": "a-long-enough-pass",
            "tenant_id": str(world.tenants["dalian-water"]),
        },
    )
    assert response.status_code == 303
    listing = browser.client.get(response.headers["location"])
    assert "new.operator" in listing.text
    assert "The user was created." in listing.text


def test_a_weak_password_is_shown_on_the_user_form(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit(
        "/console/users",
        {
            "username": "weak.one",
            "display_name": "弱",
            "password": "short",
            "tenant_id": str(world.tenants["dalian"]),
        },
    )
    assert response.status_code == 422
    assert "请设置更长、更不易被猜中的密码" in response.text
    assert 'value="weak.one"' in response.text


def test_roles_page_grants_and_revokes(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    page = browser.client.get("/console/roles?lang=zh")
    assert "core.tenant.admin" in page.text
    granted = browser.submit(
        "/console/roles/bindings",
        {
            "user_id": str(world.users["water.viewer"]),
            "role_name": "auditor",
            "tenant_id": str(world.tenants["dalian-water"]),
        },
    )
    assert granted.status_code == 303
    listing = browser.client.get(granted.headers["location"])
    assert "角色已授予" in listing.text
    rows = listing.text.split("<tr>")
    row = next(r for r in rows if "water.viewer" in r and "审计员" in r)
    binding = re.search(r"/console/roles/bindings/([0-9a-f-]+)/revoke", row)
    assert binding
    asked = browser.submit(f"/console/roles/bindings/{binding[1]}/revoke")
    assert asked.status_code == 200
    assert "water.viewer" in asked.text
    token = re.search(r'name="form_token" value="([^"]+)"', asked.text)
    assert token
    revoked = browser.submit(
        f"/console/roles/bindings/{binding[1]}/revoke", {"confirm": "yes", "form_token": token[1]}
    )
    assert revoked.status_code == 303
    assert "角色授权已撤销" in browser.client.get(revoked.headers["location"]).text


def test_granting_beyond_ones_own_permissions_is_refused(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit(
        "/console/roles/bindings",
        {
            "user_id": str(world.users["water.viewer"]),
            "role_name": "platform_admin",
            "tenant_id": str(world.tenants["dalian"]),
        },
    )
    assert response.status_code == 403
    assert "操作未完成" in response.text


def test_revoking_an_unknown_binding_is_a_friendly_404(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    response = browser.submit("/console/roles/bindings/00000000-0000-4000-8000-000000000000/revoke")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "角色授权不存在" in response.text


def test_new_api_key_is_shown_exactly_once(browser: Browser, world: World) -> None:
    # Given an operator on the API keys page
    browser.sign_in("water.viewer")
    # When they create a key
    response = browser.submit(
        "/console/api-keys", {"name": "nightly import", "expires_in_days": "30"}
    )
    assert response.status_code == 303
    assert "cck_" not in response.headers["location"]
    # Then the next page shows its token
    first = browser.client.get(response.headers["location"])
    token = re.search(r'value="(cck_[^"]+)"', first.text)
    assert token
    assert first.headers["cache-control"] == "no-store"
    # And the token works against the API
    me = browser.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token[1]}"})
    assert me.status_code == 200
    assert me.json()["user"]["username"] == "water.viewer"
    # But it is never shown again
    again = browser.client.get("/console/api-keys")
    assert token[1] not in again.text
    assert "nightly import" in again.text


def test_revoke_an_api_key(browser: Browser, world: World) -> None:
    browser.sign_in("water.viewer")
    browser.submit("/console/api-keys", {"name": "to revoke"})
    page = browser.client.get("/console/api-keys")
    token = re.search(r'value="(cck_[^"]+)"', page.text)
    key = re.search(r"/console/api-keys/([0-9a-f-]+)/revoke", page.text)
    assert token
    assert key
    response = browser.submit(f"/console/api-keys/{key[1]}/revoke")
    assert response.status_code == 303
    assert "已吊销" in browser.client.get(response.headers["location"]).text
    me = browser.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token[1]}"})
    assert me.status_code == 401


def test_an_empty_key_name_is_asked_for_again(browser: Browser, world: World) -> None:
    browser.sign_in("water.viewer")
    response = browser.submit("/console/api-keys", {"name": " ", "expires_in_days": "99999"})
    assert response.status_code == 422
    assert "请填写名称" in response.text
    assert "1 至 3650" in response.text


def test_audit_page_lists_and_filters_records(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    browser.submit(
        f"/console/tenants/{world.tenants['dalian']}/children",
        {"name_zh": "审计", "name_en": "Audit me", "slug": "audit-me", "kind": "agency"},
    )
    page = browser.client.get("/console/audit?lang=en")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "core.tenant.create" in text
    assert "tenant:audit-me" in text
    assert "tenant:guiyang" not in text  # another subtree's records stay hidden
    filtered = text_of(browser.client.get("/console/audit?action=core.session").text)
    assert "core.session.login" in filtered
    assert "core.tenant.create" not in filtered
    # times are shown in the installation's zone (Beijing by default), with the offset
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\+8", text)


def test_audit_page_pages_by_cursor(browser: Browser, world: World, services: Services) -> None:
    with services.db.unit_of_work() as session:  # more records than a page of 25
        for index in range(30):
            audit.record(
                session=session,
                actor=Actor(kind="user", name="admin", via="session"),
                action="tests.paging",
                target=f"thing:{index}",
            )
    browser.sign_in("admin")
    page = browser.client.get("/console/audit?size=25")
    listed = r'<a href="/console/audit/(\d+)">\d+</a>'
    numbers = [int(n) for n in re.findall(listed, page.text)]
    assert numbers == sorted(numbers, reverse=True)
    following = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert following is not None
    older = browser.client.get(following.group(1).replace("&amp;", "&"))
    shown = [int(n) for n in re.findall(listed, older.text)]
    assert shown
    assert all(n < min(numbers) for n in shown)


def test_a_bad_audit_query_is_an_html_page(browser: Browser, world: World) -> None:
    browser.sign_in("admin")
    response = browser.client.get("/console/audit?days_from=zero")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")


def test_unknown_pages_are_html_for_browsers_and_json_for_programs(browser: Browser) -> None:
    page = browser.client.get("/no/such/page?lang=en")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text
    assert 'href="/"' in page.text
    api = browser.client.get("/no/such/page", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"
