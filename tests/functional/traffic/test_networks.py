"""Stored road networks: imported whole or not at all, per tenant, audited, readable by those
who may read them (the API and the console's map), and nobody else."""

from __future__ import annotations

import gzip

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import SiblingWorld, make_member, unique

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
