"""Admission to the database: past its limits a request is answered 503 with ``Retry-After``
and changes nothing; within them it waits its turn and is served."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from tests.factories.core import make_member, make_tenant

from civicloud.app import admission_for
from civicloud.core.config import WebSettings
from civicloud.core.errors import ServiceBusy
from civicloud.core.services import Services
from civicloud.web.admission import THREADS, Admission

JSON = {"accept": "application/json"}


@pytest.fixture
def tight_app(app: FastAPI) -> Iterator[FastAPI]:
    """The module's app with one writer's slot, a short wait and a short line."""
    kept = app.state.admission
    app.state.admission = Admission(writers=1, readers=2, wait_seconds=0.3, max_waiting=2)
    yield app
    app.state.admission = kept


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    """API-key headers of a tenant administrator, and (as ``home``) the id of its tenant."""
    with services.db.unit_of_work() as session:
        home = make_tenant(session)
        member = make_member(session, services.passwords, home=home, role="tenant_admin")
        return {**JSON, **member.headers, "home": str(home.id)}


def new_tenant(client: TestClient, admin: dict[str, str]) -> httpx2.Response:
    return client.post(
        "/api/v1/tenants",
        json={
            "slug": "busy-" + uuid.uuid4().hex[:8],
            "name_zh": "忙",
            "name_en": "Busy",
            "kind": "agency",
            "parent_id": admin["home"],
        },
        headers=_headers(admin),
    )


def test_a_write_that_waits_too_long_is_answered_503_and_changes_nothing(
    tight_app: FastAPI, admin: dict[str, str]
) -> None:
    admission: Admission = tight_app.state.admission
    with TestClient(tight_app, base_url="https://testserver") as client:
        held = threading.Event()
        release = threading.Event()

        async def hold_the_writer() -> None:
            async with admission.slot(write=True):
                held.set()
                await anyio.to_thread.run_sync(release.wait)

        # given another request holding the only writer's slot
        assert client.portal is not None
        with client.portal.wrap_async_context_manager(_task(hold_the_writer)):
            assert held.wait(5)
            try:
                # when a write arrives, it waits 0.3 s and is refused: 503 with Retry-After
                before = _tenant_count(client, admin)
                response = new_tenant(client, admin)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["code"] == "core.service_busy"
                # and reads are still served (they have slots of their own)
                assert _tenant_count(client, admin) == before
            finally:
                release.set()
        # then, once the slot is free, the same write goes through
        created = new_tenant(client, admin)
        assert created.status_code == 201, created.text
        assert _tenant_count(client, admin) == before + 1


def test_a_request_past_the_line_is_refused_at_once() -> None:
    # given one writer's slot taken and a line of one already waiting
    admission = Admission(writers=1, readers=1, wait_seconds=5, max_waiting=1)

    async def scenario() -> None:
        async with admission.slot(write=True), anyio.create_task_group() as tasks:
            waiting = anyio.Event()

            async def wait_in_line() -> None:
                waiting.set()
                with pytest.raises(ServiceBusy):
                    async with admission.slot(write=True):
                        pass

            tasks.start_soon(wait_in_line)
            await waiting.wait()
            await anyio.lowlevel.checkpoint()  # the waiter is in line now
            # when one more arrives, then it is refused without waiting its 5 s
            with anyio.fail_after(1), pytest.raises(ServiceBusy) as refused:
                async with admission.slot(write=True):
                    pass
            assert refused.value.extra["retry_after"] >= 1
            tasks.cancel_scope.cancel()

    anyio.run(scenario)


def test_waiting_requests_are_served_in_turn() -> None:
    # given two writers' slots and ten requests
    admission = Admission(writers=2, readers=1, wait_seconds=5, max_waiting=100)
    inside = 0
    most = 0
    served = 0

    async def one() -> None:
        nonlocal inside, most, served
        async with admission.slot(write=True):
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.01)
            inside -= 1
            served += 1

    async def scenario() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(one)

    # when they arrive at once, then every one is served, never more than two at a time
    anyio.run(scenario)
    assert (served, most) == (10, 2)


def test_slots_stay_below_the_worker_threads(services: Services) -> None:
    # a slot holder must always find a thread for its route and its commit
    admission = admission_for(services)
    assert admission.writers + admission.readers < THREADS
    with pytest.raises(ValueError, match="worker threads"):
        Admission(writers=THREADS, readers=1, wait_seconds=1, max_waiting=1)


def _tenant_count(client: TestClient, admin: dict[str, str]) -> int:
    response = client.get("/api/v1/tenants", headers=_headers(admin))
    assert response.status_code == 200, response.text
    return len(response.json())


def _headers(admin: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in admin.items() if k != "home"}


class _task:  # noqa: N801 - used as a context manager factory, like contextlib's
    """An async context manager running ``work`` in the background while the block runs."""

    def __init__(self, work: object) -> None:
        self.work = work

    async def __aenter__(self) -> None:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self.work)  # type: ignore[arg-type]

    async def __aexit__(self, *exc: object) -> None:
        await self._group.__aexit__(None, None, None)


def test_any_configured_slots_stay_below_the_worker_threads(services: Services) -> None:
    # given the most slots the settings allow, then the app can still admit them
    web = services.settings.web.model_copy(update={"db_writers": 32, "db_readers": 15})
    settings = services.settings.model_copy(update={"web": web})
    most = admission_for(services.with_settings(settings))
    assert most.writers + most.readers < THREADS
    # and more than that is refused as a setting, with its name
    with pytest.raises(ValidationError, match="db_readers"):
        WebSettings(db_readers=16)
