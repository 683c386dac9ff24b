"""The public portal: languages, landmarks and accessibility basics."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from tests.functional.web.helpers import Browser, World, text_of


class _Structure(HTMLParser):
    """Collects what the accessibility checks need from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.html_lang: str | None = None
        self.tags: list[str] = []
        self.focusable: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.html_lang = found.get("lang")
        if tag in ("a", "button", "input", "select", "textarea") and found.get("type") != "hidden":
            self.focusable.append({"tag": tag, **found})
        if tag in ("input", "select", "textarea") and found.get("type") not in ("hidden", "submit"):
            self.inputs.append(found)
        if tag == "label" and found.get("for"):
            self.label_for.add(str(found["for"]))


def structure(html: str) -> _Structure:
    """Parse ``html``."""
    parser = _Structure()
    parser.feed(html)
    return parser


def test_home_is_in_chinese_by_default(browser: Browser) -> None:
    # Given a browser that states no language
    # When it opens the home page
    page = browser.client.get("/", headers={"Accept-Language": ""})
    # Then the page is in Simplified Chinese and offers the city's services
    assert page.status_code == 200
    assert structure(page.text).html_lang == "zh-CN"
    text = text_of(page.text)
    for words in ("城市政务云", "缴费服务", "政务存储", "交通出行", "碳排放监测", "即将上线"):
        assert words in text


def test_home_follows_accept_language(browser: Browser) -> None:
    # Given a browser that prefers English
    page = browser.client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9,zh-CN;q=0.5"})
    # Then the page is in English
    assert structure(page.text).html_lang == "en"
    assert "Bill payment" in page.text
    assert "缴费服务" not in page.text


def test_accept_language_quality_decides(browser: Browser) -> None:
    # Given a browser that lists English first but prefers Chinese by weight
    page = browser.client.get("/", headers={"Accept-Language": "en;q=0.4, zh-Hans-CN;q=0.9"})
    # Then Chinese wins
    assert structure(page.text).html_lang == "zh-CN"


def test_unsupported_languages_fall_back_to_the_default(browser: Browser) -> None:
    page = browser.client.get("/?lang=fr", headers={"Accept-Language": "fr-FR, de;q=0.8"})
    assert structure(page.text).html_lang == "zh-CN"


def test_lang_switch_sets_a_cookie_that_sticks(browser: Browser) -> None:
    # Given a Chinese page with a switch to English in its header
    first = browser.client.get("/", headers={"Accept-Language": "zh-CN"})
    assert 'href="/?lang=en"' in first.text
    # When the visitor follows it
    switched = browser.client.get("/?lang=en", headers={"Accept-Language": "zh-CN"})
    # Then the page is English, the choice is remembered, and later pages stay English
    assert structure(switched.text).html_lang == "en"
    cookie = switched.headers["set-cookie"]
    assert "civicloud_lang=en" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    later = browser.client.get("/login", headers={"Accept-Language": "zh-CN"})
    assert structure(later.text).html_lang == "en"
    assert "Staff sign-in" in later.text


def test_page_has_landmarks_and_the_skip_link_comes_first(browser: Browser) -> None:
    page = structure(browser.client.get("/").text)
    for landmark in ("header", "nav", "main", "footer"):
        assert landmark in page.tags
    first = page.focusable[0]
    assert first["tag"] == "a"
    assert first["href"] == "#main"
    assert 'id="main"' in browser.client.get("/").text


def test_footer_carries_record_filing_information(browser: Browser) -> None:
    text = text_of(browser.client.get("/?lang=zh").text)
    assert "ICP 备案号" in text
    assert "公安机关备案号" in text


@pytest.mark.parametrize(
    "path",
    [
        "/login",
        "/console",
        "/console/tenants",
        "/console/users",
        "/console/roles",
        "/console/api-keys",
        "/console/audit",
    ],
)
def test_every_input_has_a_label(browser: Browser, world: World, path: str) -> None:
    # Given an administrator's view, where every form is shown
    browser.sign_in("admin")
    page = structure(browser.client.get(path).text)
    # Then each visible input has a label naming it
    for field in page.inputs:
        assert field.get("id") in page.label_for, field


def test_tenant_page_inputs_have_unique_ids_and_labels(browser: Browser, world: World) -> None:
    browser.sign_in("admin")
    page = structure(browser.client.get(f"/console/tenants/{world.tenants['dalian']}").text)
    ids = [field.get("id") for field in page.inputs]
    assert len(ids) == len(set(ids))
    for field in page.inputs:
        assert field.get("id") in page.label_for, field


def test_static_stylesheet_is_served(browser: Browser) -> None:
    page = browser.client.get("/")
    href = page.text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    css = browser.client.get(href)
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
    assert ":focus-visible" in css.text


def test_pages_may_not_be_framed_or_cached(browser: Browser) -> None:
    page = browser.client.get("/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
