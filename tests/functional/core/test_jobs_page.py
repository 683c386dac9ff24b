"""The console's jobs page: each job's last run, duration and failures, in the installation's
zone, to whom holds ``core.job.read`` platform-wide."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.fakes import jobs as fakes
from tests.functional.web.helpers import HTML, Browser, cheap_settings, seed_world, text_of

from civicloud.app import build_services, create_app, prepare_database
from civicloud.core import identity, jobs, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.jobs import JobEnv
from civicloud.core.services import Services


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A database of the module's own, running the installed modules and the fake one."""
    built = build_services(cheap_settings(tmp_path_factory.mktemp("jobs-page")))
    prepare_database(built)
    seed_world(built)
    yield fakes.with_modules(built, *built.modules, fakes.module())
    built.db.dispose()


@pytest.fixture
def browser(services: Services) -> Iterator[Browser]:
    """A browser over the app."""
    with TestClient(
        create_app(services=services), base_url="https://testserver", headers=HTML
    ) as client:
        yield Browser(client)


def test_the_page_shows_each_jobs_last_run_and_failures(
    services: Services, browser: Browser
) -> None:
    # given a run of the fake module's first job, one of whose two items failed
    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        if item == 2:
            raise RuntimeError("the provider is away")
        return "done"

    fakes.first.list_due = lambda _s, _e: [1, 2]
    fakes.first.handle_one = handle
    first = next(job for job in services.modules.jobs() if job.name.startswith("jobtest."))
    jobs.run_job(services, first)
    # when the platform administrator opens the jobs page
    browser.sign_in("admin")
    page = browser.client.get("/console/jobs?lang=en")
    # then it lists every installed job, the failed run with its time in Beijing and its error
    assert page.status_code == 200
    text = text_of(page.text)
    for job in services.modules.jobs():
        assert job.name in text
    assert "UTC+8" in text
    assert "RuntimeError: the provider is away" in text
    assert "Not run yet" in text  # the second
    assert 'href="/console/jobs"' in page.text
    # and in Chinese
    chinese = text_of(browser.client.get("/console/jobs?lang=zh").text)
    assert "后台任务" in chinese
    assert "尚未运行" in chinese


def test_the_page_is_refused_without_the_permission_platform_wide(browser: Browser) -> None:
    # given a tenant's administrator
    browser.sign_in("dalian.admin")
    # when they open the jobs page, then it is refused, and the console does not link it
    assert browser.client.get("/console/jobs").status_code == 403
    assert 'href="/console/jobs"' not in browser.client.get("/console").text


def test_a_tenants_grant_of_the_permission_shows_no_link_to_a_platform_page(
    services: Services, browser: Browser
) -> None:
    # given a user holding core.job.read through a role bound at a tenant, not platform-wide
    system = Actor.system("tests")
    with services.db.unit_of_work() as session:
        roles.create_role(
            session=session,
            actor=system,
            data=roles.RoleCreate(
                name="job_watcher",
                name_zh="作业观察员",
                name_en="Job watcher",
                permissions=["core.job.read", "core.tenant.read"],
            ),
        )
        dalian = tenants.get_tenant_by_slug(session=session, slug="dalian")
        user = identity.get_user_by_username(session=session, username="dalian.admin")
        assert dalian is not None
        assert user is not None
        roles.grant_role(
            session=session,
            actor=system,
            data=roles.RoleBindingCreate(
                user_id=user.id, role_name="job_watcher", tenant_id=dalian.id
            ),
        )
    browser.sign_in("dalian.admin")
    # then the page, which needs the permission platform-wide, is refused and not linked
    assert browser.client.get("/console/jobs").status_code == 403
    assert 'href="/console/jobs"' not in browser.client.get("/console").text
    # while the platform's administrator is shown the link
    browser.client.post("/logout", data={"csrf_token": browser.csrf()})
    browser.client.cookies.clear()
    browser.sign_in("admin")
    assert 'href="/console/jobs"' in browser.client.get("/console").text
