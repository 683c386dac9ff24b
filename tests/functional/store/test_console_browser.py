"""Store's console in a real browser: Debian's Chromium, driven by Playwright.

The application runs under uvicorn on a free loopback port, over a fresh SQLite database, beside
a live S3 port (``store.public_url`` names it, so that share links lead there). A tenant's Store
administrator signs in, creates a bucket, uploads two files and a folder with the upload script
(its progress bar reaching 100%), browses into the folder, searches, opens, downloads, shares and
deletes an object, in Chinese and in English (the console's language switch), on a phone and on
a desktop; nothing is wider than the phone's screen and no request leaves the site. A reader is
offered no upload and no delete. Screenshots land in ``test-artifacts/screenshots/store-*.png``.
The browser is never downloaded: without ``/usr/bin/chromium`` these tests are skipped.
"""

# The chromium fixture is imported from Pay's browser tests and named again as a parameter.
# ruff: noqa: F811
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import FilePayload, Page, Route, ViewportSize, expect
from tests.factories.core import PASSWORD, make_tenant
from tests.factories.store import make_s3_member
from tests.functional.live_server import free_port, serving
from tests.functional.pay.test_pay_browser import (  # noqa: F401 - the chromium fixture
    CHROMIUM,
    SHOTS,
    chromium,
)
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.app import build_services, create_app, load_settings, prepare_database
from civicloud.core.config import AuthSettings
from civicloud.core.services import Services
from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3
from civicloud.store.settings import StoreSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
ALPHA, BETA = b"alpha bytes\n" * 300, b"beta;csv\n1;2\n"
FOLDER = "年度报告"
#: What the pages say, in each language.
WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "html": "zh-CN",
        "create": "创建",
        "upload": "上传",
        "finished": "所有文件均已上传。",
        "search": "查询",
        "download": "下载",
        "make_link": "生成链接",
        "delete": "删除",
        "folder": "文件夹",
        "done": "完成",
        "uploaded": "文件已上传。",
        "deleted": "对象已删除。",
    },
    "en": {
        "html": "en",
        "create": "Create",
        "upload": "Upload",
        "finished": "Every file was uploaded.",
        "search": "Search",
        "download": "Download",
        "make_link": "Make a link",
        "delete": "Delete",
        "folder": "Folder",
        "done": "Done",
        "uploaded": "The files were uploaded.",
        "deleted": "The object was deleted.",
    },
}


@dataclass(frozen=True)
class Site:
    """The running console and S3 port, and the tenant's Store administrator and reader."""

    url: str
    s3: Port
    admin: Any
    admin_name: str
    reader_name: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The application on a free loopback port, its S3 port on another, over a fresh database."""
    web_port, s3_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("civicloud-store-browser"),
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        store=StoreSettings(s3_port=s3_port, public_url=s3_url),
    )
    services: Services = build_services(settings)
    prepare_database(services)
    context = services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        city = make_tenant(session, parent=make_tenant(session))
        admin = make_s3_member(session, services.passwords, context, tenant=city)
        reader = make_s3_member(
            session, services.passwords, context, tenant=city, role="store_reader"
        )
        admin_name, reader_name = admin.user.username, reader.user.username
    app: FastAPI = create_app(services=services)
    running = RunningS3(context, host="127.0.0.1", port=s3_port, tls=None)
    try:
        with serving(app, web_port) as url:
            yield Site(url, Port(s3_url, None, context, services), admin, admin_name, reader_name)
    finally:
        running.stop(timeout=10)
        services.db.dispose()


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"store-{name}.png"), full_page=True)


def fits(page: Page) -> None:
    """Nothing on the page is wider than the screen."""
    wide, screen = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert wide <= screen, f"{page.url} is {wide - screen}px wider than the screen"


def sign_in(page: Page, site: Site, username: str) -> None:
    """Sign ``username`` in, landing on Store's console."""
    page.goto(f"{site.url}/login?next=/console/store")
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-password").press("Enter")
    expect(page).to_have_url(f"{site.url}/console/store")


def same_origin(site: Site, requests: list[str]) -> None:
    """Every request the page made went to the site."""
    away = [u for u in requests if u.startswith("http") and not u.startswith(f"{site.url}/")]
    assert not away, f"requests to other origins: {away}"


def objects(page: Page) -> Any:
    """The rows of the object browser's table."""
    return page.locator("table.store-objects tbody tr")


@pytest.mark.parametrize(("viewport", "device"), [(PHONE, "phone"), (DESKTOP, "desktop")])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_administrator_uploads_browses_shares_and_deletes(
    chromium: Chromium,
    site: Site,
    tmp_path: Path,
    lang: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[lang]
    phone = device == "phone"
    context = chromium.new_context(
        viewport=viewport, locale="zh-CN", device_scale_factor=2 if phone else 1
    )
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        # Given the tenant's Store administrator signed in, in the language chosen by the switch
        sign_in(page, site, site.admin_name)
        if lang == "en":
            page.locator(".lang-switch a[hreflang=en]").click()
        expect(page.locator("html")).to_have_attribute("lang", words["html"])
        fits(page)
        # When they create a bucket from the page
        name = bucket_name(f"{lang}-{device}")
        page.locator("input[name=bucket_name]").fill(name)
        page.get_by_role("button", name=words["create"], exact=True).click()
        # Then its page opens, empty
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        expect(page.locator("html")).to_have_attribute("lang", words["html"])
        fits(page)
        # When two files and a folder are chosen and uploaded
        folder = tmp_path / FOLDER
        (folder / "2026").mkdir(parents=True)
        (folder / "2026" / "summary.txt").write_bytes(b"summary of 2026\n")
        (folder / "notes.txt").write_text("备注：一切正常\n", encoding="utf-8")  # noqa: RUF001
        page.locator("#upload-files").set_input_files(
            [
                FilePayload(name="alpha.txt", mimeType="text/plain", buffer=ALPHA),
                FilePayload(name="beta.csv", mimeType="text/csv", buffer=BETA),
            ]
        )
        page.locator("#upload-folder").set_input_files(folder)
        # (the last file's answer is held back while the page is photographed, and what the
        # progress said when the script left the page is kept on the way)
        page.evaluate(
            """() => addEventListener("beforeunload", () => {
                sessionStorage.setItem("progress", JSON.stringify({
                    value: document.querySelector(".store-progress-total progress").value,
                    text: document.querySelector(".store-progress-text").textContent,
                    files: Object.fromEntries(
                        [...document.querySelectorAll(".store-progress-files li")].map((li) => [
                            li.querySelector(".name").textContent,
                            [li.querySelector("progress").value,
                             li.querySelector("span:last-child").textContent],
                        ])),
                }));
            })"""
        )
        uploads: list[Route] = []

        def hold_the_last(route: Route) -> None:
            uploads.append(route)
            if len(uploads) < 4:
                route.continue_()

        page.route(f"{site.url}/console/store/buckets/{name}/upload", hold_the_last)
        page.get_by_role("button", name=words["upload"], exact=True).click()
        for _ in range(200):
            if len(uploads) == 4:
                break
            page.wait_for_timeout(50)  # polling: the uploads are under way
        assert len(uploads) == 4, "the files were not all sent"
        # Then while the last one is on its way, the others are done and the total says so
        bars = page.locator(".store-progress-files li")
        expect(bars).to_have_count(4)
        expect(bars.filter(has_text=words["done"])).to_have_count(3)
        # (100% only once every file is answered, however small the last one)
        expect(page.locator(".store-progress-text")).to_have_text(re.compile(r"^\d{1,2}%$"))
        fits(page)
        shot(page, f"progress-{lang}-{device}")
        with page.expect_navigation():
            uploads[3].continue_()
        page.unroute(f"{site.url}/console/store/buckets/{name}/upload", hold_the_last)
        # And the progress bar reached 100% for each of the four files and for all of them
        progress = page.evaluate("() => JSON.parse(sessionStorage.getItem('progress'))")
        assert progress["value"] == 100
        assert progress["text"] == words["finished"]
        assert progress["files"] == {
            path: [100, words["done"]]
            for path in (
                "alpha.txt",
                "beta.csv",
                f"{FOLDER}/2026/summary.txt",
                f"{FOLDER}/notes.txt",
            )
        }
        # And the folder, shown again, lists the files and says they were uploaded
        expect(page.get_by_role("status")).to_have_text(words["uploaded"])
        rows = objects(page)
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text(f"{FOLDER}/")
        expect(rows.nth(0)).to_contain_text(words["folder"])
        expect(rows.nth(1)).to_contain_text("alpha.txt")
        expect(rows.nth(2)).to_contain_text("beta.csv")
        expect(page.locator("html")).to_have_attribute("lang", words["html"])
        fits(page)
        shot(page, f"files-{lang}-{device}")
        # When they browse into the folder and its sub-folder
        rows.nth(0).get_by_role("link").click()
        crumbs = page.locator(".store-crumbs li")
        expect(crumbs).to_have_count(2)
        expect(crumbs.nth(1)).to_have_text(FOLDER)
        expect(objects(page)).to_have_count(2)
        objects(page).nth(0).get_by_role("link", name="2026/").click()
        expect(crumbs).to_have_count(3)
        expect(crumbs.nth(2).get_by_role("link")).to_have_attribute("aria-current", "page")
        expect(objects(page)).to_have_count(1)
        expect(objects(page).first).to_contain_text("summary.txt")
        fits(page)
        # Then the breadcrumbs lead back up, to the folder and to the bucket
        crumbs.nth(1).get_by_role("link").click()
        expect(objects(page)).to_have_count(2)
        expect(objects(page).nth(1)).to_contain_text("notes.txt")
        crumbs.nth(0).get_by_role("link").click()
        expect(objects(page)).to_have_count(3)
        # When they search the bucket's top by a name's beginning
        search = page.get_by_role("search")
        search.locator("input[name=q]").fill("al")
        search.get_by_role("button", name=words["search"], exact=True).click()
        # Then only what starts with it is listed
        expect(objects(page)).to_have_count(1)
        expect(objects(page).first).to_contain_text("alpha.txt")
        fits(page)
        # When they open the object
        objects(page).first.get_by_role("link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("alpha.txt")
        expect(page.locator("main")).to_contain_text("text/plain")
        fits(page)
        # Then its download is its bytes
        with page.expect_download() as downloading:
            page.locator("ul.actions").get_by_role("link", name=words["download"]).click()
        download = downloading.value
        assert download.suggested_filename == "alpha.txt"
        assert Path(download.path()).read_bytes() == ALPHA
        # And a share link made on the page leads to the S3 port, and downloads it unsigned-in
        page.get_by_role("button", name=words["make_link"], exact=True).click()
        link = page.locator("a.store-link")
        expect(link).to_be_visible()
        href = link.get_attribute("href") or ""
        assert href.startswith(f"{site.s3.endpoint}/{name}/alpha.txt?"), href
        fetched = httpx2.get(href)
        assert fetched.status_code == 200
        assert fetched.content == ALPHA
        fits(page)
        shot(page, f"object-{lang}-{device}")
        # When they delete the object, confirming on the page that asks
        page.locator("ul.actions").get_by_role("button", name=words["delete"]).click()
        expect(page.locator("main")).to_contain_text("alpha.txt")
        fits(page)
        page.locator("main form").get_by_role("button", name=words["delete"], exact=True).click()
        # Then it is gone from the bucket
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        expect(page.get_by_role("status")).to_have_text(words["deleted"])
        expect(objects(page)).to_have_count(2)
        expect(page.locator("table.store-objects")).not_to_contain_text("alpha.txt")
        fits(page)
        # And nothing the pages asked for came from elsewhere
        same_origin(site, requests)
    finally:
        context.close()


@pytest.mark.parametrize(("viewport", "device"), [(PHONE, "phone"), (DESKTOP, "desktop")])
def test_a_reader_is_offered_no_upload_and_no_delete(
    chromium: Chromium, site: Site, viewport: ViewportSize, device: str
) -> None:
    name = bucket_name("reader")
    s3 = client(site.s3, site.admin)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="docs/read-me.txt", Body=b"read me")
    context = chromium.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        sign_in(page, site, site.reader_name)
        page.goto(f"{site.url}/console/store/buckets/{name}?prefix=docs/")
        expect(objects(page)).to_have_count(1)
        # Then there is no upload form, no bucket settings to change, no delete button
        expect(page.locator("form[data-store-upload]")).to_have_count(0)
        expect(page.locator("input[type=file]")).to_have_count(0)
        expect(page.locator("button.button-danger")).to_have_count(0)
        fits(page)
        objects(page).first.get_by_role("link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("read-me.txt")
        expect(page.get_by_role("link", name="下载").first).to_be_visible()
        expect(page.get_by_role("button", name="删除")).to_have_count(0)
        expect(page.get_by_role("button", name="删除此版本")).to_have_count(0)
        expect(page.locator("form[action$='/object/delete']")).to_have_count(0)
        fits(page)
        shot(page, f"reader-object-zh-{device}")
        same_origin(site, requests)
    finally:
        context.close()
