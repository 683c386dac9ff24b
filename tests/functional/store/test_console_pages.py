"""Store's console pages, on both databases: buckets (list, create, settings, delete), the
object browser (folders, search, pages, uploads of files and folders, details, versions,
downloads, deletes), share links, access keys, usage and the access log; only what the reader
may do is offered, bad input is refused beside its field (422) and changes nothing."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import PASSWORD
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.app import create_app
from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant
from civicloud.store import console, service
from civicloud.store.context import StoreContext
from civicloud.store.errors import QuotaExceeded
from civicloud.store.models import AccessRecord, Bucket
from civicloud.store.web.views import size_text

BASE_URL = "https://testserver"


@pytest.fixture(scope="session")
def store_app(core_services: Services) -> FastAPI:
    """The application (Store included) over the shared database."""
    return create_app(services=core_services)


@pytest.fixture
def browser_factory(store_app: FastAPI) -> Iterator[Callable[[S3Member], Browser]]:
    """``signed_in(member)``: a browser signed in as the member."""
    opened: list[TestClient] = []

    def make(member: S3Member) -> Browser:
        test_client = TestClient(store_app, base_url=BASE_URL, headers=HTML)
        opened.append(test_client)
        browser = Browser(test_client)
        reply = browser.sign_in(member.user.username, PASSWORD)
        assert reply.status_code == 303, reply.text
        return browser

    yield make
    for test_client in opened:
        test_client.close()


@pytest.fixture
def admin(member: S3Member, browser_factory: Callable[[S3Member], Browser]) -> Browser:
    """A Store administrator of a fresh tenant, signed in."""
    return browser_factory(member)


def make_bucket(services: Services, context: StoreContext, member: S3Member, **kw: str) -> str:
    name = bucket_name("console")
    with services.db.unit_of_work() as session:
        from civicloud.core.roles.service import load_actor

        user = session.merge(member.user)
        actor = load_actor(session=session, user=user, via="test")
        service.create_bucket(session=session, actor=actor, context=context, name=name, **kw)
    return name


def upload(
    browser: Browser, name: str, files: list[tuple[str, bytes]], prefix: str = ""
) -> httpx2.Response:
    return browser.client.post(
        f"/console/store/buckets/{name}/upload",
        data={"csrf_token": browser.csrf(), "prefix": prefix},
        files=[("files", (filename, body, "text/plain")) for filename, body in files],
        follow_redirects=False,
    )


def forms_of(html: str, action: str) -> dict[str, str]:
    """The hidden and filled fields of the form posting to ``action``."""
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S
    )
    assert match, f"no form for {action}"
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', match.group(1))
    }


def test_sizes_are_in_binary_units() -> None:
    assert size_text(0) == "0 B"
    assert size_text(1023) == "1023 B"
    assert size_text(1536) == "1.5 KiB"
    assert size_text(5 << 30) == "5.0 GiB"


def test_an_administrator_creates_a_bucket_and_sees_it_listed(
    admin: Browser, core_services: Services
) -> None:
    name = bucket_name("made")
    # When a bucket is created through the form
    made = admin.submit("/console/store/buckets", {"bucket_name": name, "acl": "private"})
    # Then the answer leads to its page, and the list shows it with its region and size
    assert made.status_code == 303
    assert made.headers["location"].startswith(f"/console/store/buckets/{name}")
    listed = admin.client.get(f"/console/store?q={name}")
    assert listed.status_code == 200
    assert name in listed.text
    assert "0 B" in text_of(listed.text)
    assert "cn-beijing" in listed.text
    with core_services.db.unit_of_work(write=False) as session:
        records = session.scalars(
            select(AuditRecord.action).where(AuditRecord.target == f"bucket:{name}")
        ).all()
    assert "store.bucket.create" in records


@pytest.mark.parametrize("bad", ["A", "ab", "UPPER-case", "-dash", "a" * 64, "192.168.1.1", "x..y"])
def test_a_bad_bucket_name_is_refused_beside_its_field(
    admin: Browser, core_services: Services, bad: str
) -> None:
    refused = admin.submit("/console/store/buckets", {"bucket_name": bad, "acl": "private"})
    assert refused.status_code == 422
    assert 'aria-invalid="true"' in refused.text
    with core_services.db.unit_of_work(write=False) as session:
        assert session.scalar(select(Bucket).where(Bucket.name == bad)) is None


def test_an_unknown_acl_is_refused(admin: Browser) -> None:
    refused = admin.submit("/console/store/buckets", {"bucket_name": bucket_name(), "acl": "world"})
    assert refused.status_code == 422


def test_upload_browse_detail_download_and_delete(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    # Given files uploaded by the plain form, one of them from a folder (its relative path)
    sent = upload(admin, name, [("top.txt", b"top"), ("docs/2026/report.txt", b"r" * 2000)])
    assert sent.status_code == 303, sent.text
    # Then the bucket's top shows the file and the folder
    top = admin.client.get(f"/console/store/buckets/{name}")
    assert top.status_code == 200
    assert "top.txt" in top.text
    assert "docs/" in top.text
    assert "script-src 'self'" in top.headers["content-security-policy"]
    # And the folder has breadcrumbs down to it
    inner = admin.client.get(f"/console/store/buckets/{name}?prefix=docs/2026/")
    assert "report.txt" in inner.text
    assert "2026" in inner.text
    assert "2.0 KiB" in inner.text
    # And the object's page shows its details
    detail = admin.client.get(f"/console/store/buckets/{name}/object?key=docs/2026/report.txt")
    assert detail.status_code == 200
    assert "text/plain" in detail.text
    # And its download is its bytes, as a file
    got = admin.client.get(f"/console/store/buckets/{name}/download?key=docs/2026/report.txt")
    assert got.status_code == 200
    assert got.content == b"r" * 2000
    assert 'filename="report.txt"' in got.headers["content-disposition"]
    # When the object is deleted, after its confirmation
    asked = admin.submit(f"/console/store/buckets/{name}/object/delete", {"object_key": "top.txt"})
    assert asked.status_code == 200
    assert "top.txt" in asked.text
    values = forms_of(asked.text, f"/console/store/buckets/{name}/object/delete")
    deleted = admin.submit(
        f"/console/store/buckets/{name}/object/delete",
        {k: v for k, v in values.items() if k != "csrf_token"},
    )
    assert deleted.status_code == 303
    # Then it is gone, and the confirmation sent again does not act twice
    assert "top.txt" not in admin.client.get(f"/console/store/buckets/{name}").text
    again = admin.submit(
        f"/console/store/buckets/{name}/object/delete",
        {k: v for k, v in values.items() if k != "csrf_token"},
    )
    assert again.status_code == 409


def test_an_upload_without_files_is_refused(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    refused = admin.client.post(
        f"/console/store/buckets/{name}/upload",
        data={"csrf_token": admin.csrf(), "prefix": ""},
        follow_redirects=False,
    )
    assert refused.status_code == 422


def test_an_upload_larger_than_web_forms_may_be_is_taken(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    big = b"x" * (core_services.settings.web.max_body_bytes + 100_000)
    sent = upload(admin, name, [("big.bin", big)])
    assert sent.status_code == 303, sent.text[:500]
    got = admin.client.get(f"/console/store/buckets/{name}/download?key=big.bin")
    assert got.content == big


def test_an_upload_whose_commit_fails_leaves_no_blob_behind(
    admin: Browser,
    member: S3Member,
    core_services: Services,
    store_context: StoreContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a bucket, and a commit that fails after the bytes were stored (a quota taken by a
    # racing writer meanwhile)
    name = make_bucket(core_services, store_context, member)
    before = {blob_id for blob_id, *_ in store_context.backend.blobs()}

    def refused(**_: object) -> console.Uploaded:
        raise QuotaExceeded("The quota of the bucket or its tenant would be exceeded.")

    monkeypatch.setattr(console, "commit_upload", refused)

    # When a file is uploaded
    sent = upload(admin, name, [("late.txt", b"refused at the commit")])

    # Then the upload is refused, the blob written for it is gone and no version was made
    assert sent.status_code == 403, sent.text[:500]
    assert {blob_id for blob_id, *_ in store_context.backend.blobs()} - before == set()
    monkeypatch.undo()
    got = admin.client.get(f"/console/store/buckets/{name}/download?key=late.txt")
    assert got.status_code == 404


def test_a_file_name_cannot_climb_out_of_its_folder() -> None:
    assert console.upload_key("a/", "../../etc/passwd") == "a/etc/passwd"
    assert console.upload_key("", "dir\\file.txt") == "dir/file.txt"


def test_the_script_upload_answers_json(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    sent = admin.client.post(
        f"/console/store/buckets/{name}/upload",
        data={"csrf_token": admin.csrf(), "prefix": "in/", "paths": "folder/a.txt"},
        files=[("files", ("a.txt", b"abc", "text/plain"))],
        headers={"Accept": "application/json"},
    )
    assert sent.status_code == 200
    assert sent.json()["uploaded"][0]["key"] == "in/folder/a.txt"


def test_pages_in_a_folder_follow_each_other(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    upload(admin, name, [(f"f{i:03d}.txt", b"x") for i in range(105)])
    first = admin.client.get(f"/console/store/buckets/{name}")
    assert "f000.txt" in first.text
    assert "f104.txt" not in first.text
    after = re.search(r'href="([^"]*after=[^"]*)" rel="next"', first.text)
    assert after
    second = admin.client.get(after.group(1).replace("&amp;", "&"))
    assert "f104.txt" in second.text
    assert "f000.txt" not in second.text
    found = admin.client.get(f"/console/store/buckets/{name}?q=f10")
    assert "f104.txt" in found.text
    assert "f050.txt" not in found.text


def test_versions_are_listed_downloaded_and_deleted(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    assert (
        admin.submit(f"/console/store/buckets/{name}/versioning", {"status": "Enabled"}).status_code
        == 303
    )
    upload(admin, name, [("v.txt", b"one")])
    upload(admin, name, [("v.txt", b"two!")])
    page = admin.client.get(f"/console/store/buckets/{name}/object?key=v.txt")
    version_ids = re.findall(r"version_id=([A-Za-z0-9_-]{20,})", page.text)
    assert len(set(version_ids)) == 2
    oldest = version_ids[-1]
    got = admin.client.get(f"/console/store/buckets/{name}/download?key=v.txt&version_id={oldest}")
    assert got.content == b"one"
    asked = admin.submit(
        f"/console/store/buckets/{name}/object/delete",
        {"object_key": "v.txt", "version_id": oldest},
    )
    values = forms_of(asked.text, f"/console/store/buckets/{name}/object/delete")
    done = admin.submit(
        f"/console/store/buckets/{name}/object/delete",
        {k: v for k, v in values.items() if k != "csrf_token"},
    )
    assert done.status_code == 303
    assert (
        admin.client.get(
            f"/console/store/buckets/{name}/download?key=v.txt&version_id={oldest}"
        ).status_code
        == 404
    )


def test_settings_change_and_a_bad_quota_changes_nothing(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    assert (
        admin.submit(f"/console/store/buckets/{name}/acl", {"acl": "public-read"}).status_code
        == 303
    )
    assert (
        admin.submit(
            f"/console/store/buckets/{name}/quota", {"quota_gb": "1.5", "quota_objects": "10"}
        ).status_code
        == 303
    )
    refused = admin.submit(
        f"/console/store/buckets/{name}/quota", {"quota_gb": "lots", "quota_objects": "-1"}
    )
    assert refused.status_code == 422
    with core_services.db.unit_of_work(write=False) as session:
        bucket = session.scalar(select(Bucket).where(Bucket.name == name))
        assert bucket is not None
        assert bucket.acl == "public-read"
        assert bucket.quota_bytes == int(1.5 * (1 << 30))
        assert bucket.quota_objects == 10


def test_an_empty_bucket_is_deleted_after_its_confirmation_and_a_full_one_is_not(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    upload(admin, name, [("keep.txt", b"k")])
    assert admin.submit(f"/console/store/buckets/{name}/delete").status_code == 409
    empty = make_bucket(core_services, store_context, member)
    asked = admin.submit(f"/console/store/buckets/{empty}/delete")
    assert asked.status_code == 200
    assert empty in asked.text
    values = forms_of(asked.text, f"/console/store/buckets/{empty}/delete")
    done = admin.submit(
        f"/console/store/buckets/{empty}/delete",
        {k: v for k, v in values.items() if k != "csrf_token"},
    )
    assert done.status_code == 303
    with core_services.db.unit_of_work(write=False) as session:
        assert session.scalar(select(Bucket).where(Bucket.name == empty)) is None


def test_a_reader_is_offered_no_changes(
    tenant: Tenant,
    member: S3Member,
    member_factory: Callable[..., S3Member],
    browser_factory: Callable[[S3Member], Browser],
    core_services: Services,
    store_context: StoreContext,
) -> None:
    name = make_bucket(core_services, store_context, member)
    reader = browser_factory(member_factory(tenant, role="store_reader"))
    listed = reader.client.get("/console/store")
    assert name in listed.text
    assert '/console/store/buckets"' not in listed.text
    page = reader.client.get(f"/console/store/buckets/{name}")
    assert page.status_code == 200
    assert "/upload" not in page.text
    assert "/versioning" not in page.text
    assert "script-src 'none'" in page.headers["content-security-policy"]
    refused = reader.submit(f"/console/store/buckets/{name}/acl", {"acl": "public-read"})
    assert refused.status_code == 403


def test_someone_without_store_roles_is_told_so(
    tenant: Tenant,
    member_factory: Callable[..., S3Member],
    browser_factory: Callable[[S3Member], Browser],
) -> None:
    nobody = browser_factory(member_factory(tenant, role="viewer"))
    for path in ("/console/store", "/console/store/log", "/console/store/usage"):
        answer = nobody.client.get(path)
        assert answer.status_code == 200
        assert "not-allowed" in answer.text


def test_another_tenants_bucket_does_not_exist_for_you(
    admin: Browser,
    member_factory: Callable[..., S3Member],
    core_services: Services,
    store_context: StoreContext,
) -> None:
    from tests.factories.core import make_tenant

    with core_services.db.unit_of_work() as session:
        other_tenant = make_tenant(session, parent=make_tenant(session))
    other = member_factory(other_tenant)
    name = make_bucket(core_services, store_context, other)
    for path in (
        f"/console/store/buckets/{name}",
        f"/console/store/buckets/{name}/object?key=a",
        f"/console/store/buckets/{name}/download?key=a",
    ):
        assert admin.client.get(path).status_code == 404
    assert admin.submit(f"/console/store/buckets/{name}/delete").status_code == 404
    assert upload(admin, name, [("x.txt", b"x")]).status_code == 404


def test_keys_are_created_shown_once_and_revoked(admin: Browser, member: S3Member) -> None:
    made = admin.submit("/console/store/keys", {"description": "backup"})
    assert made.status_code == 200
    secret = re.search(r'class="store-secret-value">([^<]+)<', made.text)
    assert secret
    again = admin.client.get("/console/store/keys")
    assert secret.group(1) not in again.text
    assert "backup" in again.text
    key_id = re.search(r"<code>(CC[A-Z2-7]{18})</code></td>\s*<td[^>]*>backup", again.text)
    assert key_id
    action = f"/console/store/keys/{key_id.group(1)}/revoke"
    asked = admin.submit(action)
    values = forms_of(asked.text, action)
    done = admin.submit(action, {k: v for k, v in values.items() if k != "csrf_token"})
    assert done.status_code == 303
    assert key_id.group(1) not in admin.client.get("/console/store/keys").text


def test_a_share_link_downloads_without_signing_in(
    s3_http: Port,
    admin: Browser,
    member: S3Member,
    core_services: Services,
    store_context: StoreContext,
) -> None:
    name = make_bucket(core_services, store_context, member)
    upload(admin, name, [("shared/a b.txt", b"shared bytes")])
    page = admin.client.get(f"/console/store/buckets/{name}/object?key={quote('shared/a b.txt')}")
    assert "Share link" in page.text or "分享链接" in page.text
    # The page makes a link for the installation's S3 address; the service signs it for any.
    local = dataclasses.replace(
        store_context,
        settings=store_context.settings.model_copy(update={"public_url": s3_http.endpoint}),
    )
    with core_services.db.unit_of_work(write=False) as session:
        from civicloud.core.roles.service import load_actor

        actor = load_actor(session=session, user=session.merge(member.user), via="test")
        link = console.share_link(
            session=session,
            actor=actor,
            context=local,
            bucket=service.bucket_ref(session, name),
            key="shared/a b.txt",
            access_key_id=member.access_key,
            expires_seconds=900,
        )
    got = httpx2.get(link)
    assert got.status_code == 200
    assert got.content == b"shared bytes"
    made = admin.submit(
        f"/console/store/buckets/{name}/share",
        {"object_key": "shared/a b.txt", "access_key": member.access_key, "expires": "3600"},
    )
    assert made.status_code == 200
    assert "X-Amz-Signature" in made.text
    bad = admin.submit(
        f"/console/store/buckets/{name}/share",
        {"object_key": "shared/a b.txt", "access_key": member.access_key, "expires": "60"},
    )
    assert bad.status_code == 422


def test_usage_and_its_chart(
    admin: Browser, member: S3Member, core_services: Services, store_context: StoreContext
) -> None:
    name = make_bucket(core_services, store_context, member)
    upload(admin, name, [("u.bin", b"u" * 4096)])
    page = admin.client.get(f"/console/store/usage?tenant_id={member.tenant.id}")
    assert page.status_code == 200
    assert name in page.text
    assert "4.0 KiB" in page.text
    assert (
        admin.submit(
            "/console/store/usage/quota", {"tenant_id": str(member.tenant.id), "quota_gb": "x"}
        ).status_code
        == 422
    )
    assert (
        admin.submit(
            "/console/store/usage/quota", {"tenant_id": str(member.tenant.id), "quota_gb": "10"}
        ).status_code
        == 303
    )


def test_the_access_log_lists_and_exports(
    s3_http: Port,
    admin: Browser,
    member: S3Member,
    core_services: Services,
    store_context: StoreContext,
) -> None:
    name = make_bucket(core_services, store_context, member)
    s3 = client(s3_http, member)
    s3.put_object(Bucket=name, Key="logged.txt", Body=b"x")
    # The S3 port records a request's event just after it answers: wait for it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        store_context.log.flush()
        with core_services.db.unit_of_work(write=False) as session:
            if session.scalar(
                select(AccessRecord.id).where(
                    AccessRecord.bucket == name, AccessRecord.key == "logged.txt"
                )
            ):
                break
        time.sleep(0.05)
    page = admin.client.get(f"/console/store/log?bucket={name}")
    assert page.status_code == 200
    assert "<code>PutObject</code>" in page.text
    exported = admin.client.get(f"/console/store/log?bucket={name}&format=csv")
    assert exported.status_code == 200
    assert "logged.txt" in exported.text
    bad = admin.client.get("/console/store/log?days_from=2026-13-01")
    assert bad.status_code == 422


def test_the_pages_speak_chinese(admin: Browser, member: S3Member) -> None:
    page = admin.client.get("/console/store?lang=zh")
    assert page.status_code == 200
    assert "存储桶" in page.text
