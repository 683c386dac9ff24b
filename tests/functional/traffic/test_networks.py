"""Stored road networks: imported whole or not at all, per tenant, audited, readable by those
who may read them (the API and the console's map), and nobody else."""

from __future__ import annotations

import gzip

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import PASSWORD, SiblingWorld, make_member, unique
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.audit.models import AuditRecord
from civicloud.core.errors import NotFound, PermissionDenied
from civicloud.core.roles.service import load_actor
from civicloud.core.services import Services
from civicloud.traffic import networks
from civicloud.traffic.errors import (
    NetworkNameTaken,
    NetworkUnreadable,
    NoSignals,
    TrafficInvalidInput,
)
from civicloud.traffic.models import TrafficNetwork


def _import(services: Services, world: SiblingWorld, content: bytes, name: str) -> TrafficNetwork:
    with services.db.unit_of_work() as session:
        return networks.import_network(
            session=session,
            actor=Actor.system("test"),
            tenant_id=world.a.child.id,
            name=name,
            content=content,
            source_name="junction.net.xml",
        )


def test_an_imported_network_is_kept_and_read_back(
    core_services: Services, world: SiblingWorld, junction_file: bytes
) -> None:
    name = unique("net")
    row = _import(core_services, world, junction_file, name)
    # Four arms in and out, the approaches split where their left-turn lane begins.
    assert (row.signals, row.edges) == (1, 12)
    with core_services.db.unit_of_work() as session:
        stored = session.get(TrafficNetwork, row.id)
        assert stored is not None
        assert gzip.decompress(stored.content) == junction_file
        assert list(networks.load(stored).signals) == ["A0"]
        audited = session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(
                AuditRecord.action == "traffic.network.import",
                AuditRecord.target == f"traffic_network:{row.id}",
            )
        )
        assert audited == 1
    # A gzipped file is taken as it is.
    packed = _import(core_services, world, gzip.compress(junction_file), unique("gz"))
    assert packed.sha256 == row.sha256


def test_a_taken_name_and_a_broken_file_store_nothing(
    core_services: Services, world: SiblingWorld, junction_file: bytes
) -> None:
    name = unique("net")
    _import(core_services, world, junction_file, name)
    with pytest.raises(NetworkNameTaken):
        _import(core_services, world, junction_file, name)
    with pytest.raises(NetworkUnreadable):
        _import(core_services, world, junction_file[: len(junction_file) // 2], unique("cut"))
    with pytest.raises(NoSignals):
        _import(core_services, world, b'<net version="1.20"></net>', unique("empty"))
    with pytest.raises(TrafficInvalidInput):
        _import(core_services, world, junction_file, "   ")
    with core_services.db.unit_of_work() as session:
        count = session.scalar(
            select(func.count())
            .select_from(TrafficNetwork)
            .where(TrafficNetwork.tenant_id == world.a.child.id)
        )
        assert count == 1


def test_the_api_shows_networks_to_their_tenant_only(
    core_services: Services, world: SiblingWorld, junction_file: bytes, client: TestClient
) -> None:
    row = _import(core_services, world, junction_file, unique("net"))
    with core_services.db.unit_of_work() as session:
        viewer = make_member(
            session,
            core_services.passwords,
            home=session.merge(world.a.tenant),
            role="traffic_viewer",
        )
    listed = client.get(
        f"/api/v1/traffic/tenants/{world.a.child.id}/networks", headers=viewer.headers
    )
    assert listed.status_code == 200
    assert [n["name"] for n in listed.json()] == [row.name]
    detail = client.get(f"/api/v1/traffic/networks/{row.id}", headers=viewer.headers)
    assert detail.status_code == 200
    (signal,) = detail.json()["signal_list"]
    assert signal["tls_id"] == "A0"
    assert signal["cycle_s"] == 90
    assert len(signal["phases"]) == 8
    # The sibling province's administrator: the network does not exist for them.
    other = client.get(f"/api/v1/traffic/networks/{row.id}", headers=world.b.admin.headers)
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")
    refused = client.get(
        f"/api/v1/traffic/tenants/{world.a.child.id}/networks", headers=world.b.admin.headers
    )
    assert refused.status_code in {403, 404}


def test_a_user_without_traffic_rights_may_not_import(
    core_services: Services, world: SiblingWorld, junction_file: bytes
) -> None:
    with core_services.db.unit_of_work() as session:
        user = session.merge(world.b.member.user)
        actor = load_actor(session=session, user=user, via="test")
        with pytest.raises((PermissionDenied, NotFound)):
            networks.import_network(
                session=session,
                actor=actor,
                tenant_id=world.a.child.id,
                name="x",
                content=junction_file,
            )


# --- imported over the API and the console -----------------------------------------------------


def _count(services: Services, tenant_id: object) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrafficNetwork)
                .where(TrafficNetwork.tenant_id == tenant_id)
            )
            or 0
        )


def _padded(content: bytes, size: int) -> bytes:
    """The network file with a comment after its root, to make it ``size`` bytes or more."""
    return content + b"<!-- " + b"x" * max(size - len(content), 0) + b" -->\n"


def test_the_api_imports_a_network_file_larger_than_other_requests_may_be(
    core_services: Services, world: SiblingWorld, junction_file: bytes, client: TestClient
) -> None:
    with core_services.db.unit_of_work() as session:
        city = session.merge(world.a.child)
        engineer = make_member(session, core_services.passwords, home=city, role="traffic_engineer")
        viewer = make_member(session, core_services.passwords, home=city, role="traffic_viewer")
    url = f"/api/v1/traffic/tenants/{world.a.child.id}/networks"
    big = _padded(junction_file, core_services.settings.web.max_body_bytes + 200_000)
    name = unique("uploaded")
    reply = client.post(
        url,
        params={"name": name, "file_name": "junction.net.xml"},
        content=big,
        headers={**engineer.headers, "Content-Type": "application/xml"},
    )
    assert reply.status_code == 201, reply.text[:500]
    body = reply.json()
    assert (body["name"], body["signals"], body["source_name"]) == (name, 1, "junction.net.xml")
    packed = client.post(
        url,
        params={"name": unique("gz")},
        content=gzip.compress(junction_file),
        headers=engineer.headers,
    )
    assert packed.status_code == 201, packed.text
    assert _count(core_services, world.a.child.id) == 2
    # Bad files and names are refused as problems, and nothing is stored.
    refusals = [
        (junction_file[: len(junction_file) // 2], {"name": unique("cut")}, 422),
        (b'<net version="1.20"></net>', {"name": unique("empty")}, 422),
        (b"not xml at all", {"name": unique("junk")}, 422),
        (junction_file, {"name": name}, 409),
        (junction_file, {"name": ""}, 422),
    ]
    for content, params, status in refusals:
        refused = client.post(url, params=params, content=content, headers=engineer.headers)
        assert refused.status_code == status, (params, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    # A viewer may not import; another province's administrator reaches no such tenant.
    assert (
        client.post(
            url, params={"name": unique("v")}, content=junction_file, headers=viewer.headers
        ).status_code
        == 403
    )
    other = client.post(
        url, params={"name": unique("o")}, content=junction_file, headers=world.b.admin.headers
    )
    assert other.status_code in {403, 404}
    assert _count(core_services, world.a.child.id) == 2


def test_the_console_imports_a_network_for_those_who_may(
    core_services: Services, world: SiblingWorld, junction_file: bytes, api_app: FastAPI
) -> None:
    with core_services.db.unit_of_work() as session:
        city = session.merge(world.a.child)
        engineer = make_member(session, core_services.passwords, home=city, role="traffic_engineer")
        viewer = make_member(session, core_services.passwords, home=city, role="traffic_viewer")

    def browser(member_name: str) -> Browser:
        test_client = TestClient(
            api_app, base_url="https://testserver", headers={**HTML, "Accept-Language": "en"}
        )
        opened = Browser(test_client)
        assert opened.sign_in(member_name, PASSWORD).status_code == 303
        return opened

    seen = browser(viewer.user.username).client.get("/console/traffic").text
    assert "Import a road network" not in seen
    person = browser(engineer.user.username)
    page = person.client.get("/console/traffic").text
    assert "Import a road network" in page
    # The tenants offered are the ones the engineer may import into: their city only.
    assert f'value="{world.a.child.id}"' in page
    assert f'value="{world.a.tenant.id}"' not in page

    def post(content: bytes | None, name: str):  # type: ignore[no-untyped-def]
        files = {"network": ("junction.net.xml", content, "application/xml")} if content else None
        return person.client.post(
            "/console/traffic/networks",
            data={"tenant_id": str(world.a.child.id), "name": name, "csrf_token": person.csrf()},
            files=files,
            follow_redirects=False,
        )

    missing = post(None, unique("none"))
    assert missing.status_code == 422
    assert "Choose a SUMO network file" in missing.text
    broken = post(junction_file[:200], unique("cut"))
    assert broken.status_code == 422
    assert "The network file junction.net.xml cannot be read" in text_of(broken.text)
    assert _count(core_services, world.a.child.id) == 0
    big = _padded(junction_file, core_services.settings.web.max_body_bytes + 200_000)
    done = post(big, "Downtown")
    assert done.status_code == 303, done.text[:500]
    assert done.headers["location"].endswith("?done=imported")
    shown = text_of(person.client.get(done.headers["location"]).text)
    assert "The network was imported." in shown
    assert _count(core_services, world.a.child.id) == 1


def test_a_stranger_may_not_send_a_large_body(
    core_services: Services, world: SiblingWorld, junction_file: bytes, client: TestClient
) -> None:
    url = f"/api/v1/traffic/tenants/{world.a.child.id}/networks"
    big = _padded(junction_file, core_services.settings.web.max_body_bytes + 200_000)
    # Anonymous, or with a key nobody issued: the installation's limit holds (413), and the
    # server reads no more than it before answering.
    for headers in ({}, {"Authorization": "Bearer cc_not_a_key"}, {"Authorization": "Basic x"}):
        refused = client.post(url, params={"name": unique("x")}, content=big, headers=headers)
        assert refused.status_code == 413, (headers, refused.status_code)
    # A small body from a stranger is simply unauthenticated.
    assert client.post(url, params={"name": "x"}, content=junction_file).status_code == 401
    assert _count(core_services, world.a.child.id) == 0


def test_a_file_that_unpacks_too_far_or_is_broken_is_refused_by_its_own_name(
    core_services: Services,
    world: SiblingWorld,
    junction_file: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(networks, "MAX_NETWORK_XML_BYTES", len(junction_file) - 1)
    with pytest.raises(TrafficInvalidInput, match="unpacks to more than"):
        _import(core_services, world, gzip.compress(junction_file), unique("bomb"))
    monkeypatch.undo()
    with pytest.raises(NetworkUnreadable) as broken:
        _import(core_services, world, b"\x1f\x8b not really gzip", unique("gz"))
    assert "/tmp" not in broken.value.detail
    with pytest.raises(NetworkUnreadable) as cut:
        _import(core_services, world, junction_file[:300], unique("cut"))
    text = cut.value.detail
    assert "junction.net.xml" in text
    assert "civicloud-net-" not in text
    assert ".net.xml.net.xml" not in text
