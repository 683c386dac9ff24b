"""A network's detector mapping over the API: kept in versions (validated whole, audited, the
same file again no new version), read back, and used to keep detector counts as movement counts
(re-sent counts counted once); bad mappings and counts are refused with their lines and store
nothing; readers read, only engineers write, and another tenant sees nothing."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import PASSWORD, Member, SiblingWorld, make_member, unique
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.audit.models import AuditRecord
from civicloud.core.services import Services
from civicloud.traffic import networks
from civicloud.traffic.models import TrafficCountBatch, TrafficDetectorMapping

API = "/api/v1/traffic"
DAY = date(2026, 11, 2)
MAP_HEADER = "detector_id,tls_id,from_edge,to_edge,lane,share\n"
COUNTS_HEADER = "interval_begin,interval_end,detector_id,count\n"
#: The generated junction's northern approach and where its movements go.
NORTH = "top0A0.220.00"
RIGHT, STRAIGHT = "A0left0", "A0bottom0"
#: A loop counting the right turn and the straight movement (a quarter and three quarters),
#: and a detector on the approach's second lane (straight on only).
MAPPING = MAP_HEADER + (
    f"d1,A0,{NORTH},{RIGHT},,0.25\nd1,A0,{NORTH},{STRAIGHT},,0.75\nd2,A0,{NORTH},,1,\n"
)


class Site:
    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.engineer = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.viewer = make_member(session, services.passwords, home=city, role="traffic_viewer")
            self.network_id = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("junction"),
                content=content,
            ).id
        self.outsider = world.b.admin


@pytest.fixture
def site(core_services: Services, world: SiblingWorld, junction_file: bytes) -> Site:
    return Site(core_services, world, junction_file)


def _put(client: TestClient, site: Site, content: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.put(
        f"{API}/networks/{site.network_id}/detectors",
        content=content.encode(),
        headers={**(headers or site.engineer.headers), "Content-Type": "text/csv"},
    )


def _versions(services: Services, site: Site) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrafficDetectorMapping)
                .where(TrafficDetectorMapping.network_id == site.network_id)
            )
            or 0
        )


def test_a_mapping_is_kept_in_versions_and_read_back(
    client: TestClient, core_services: Services, site: Site
) -> None:
    missing = client.get(f"{API}/networks/{site.network_id}/detectors", headers=site.viewer.headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "traffic.mapping_not_found"
    first = _put(client, site, MAPPING)
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["detectors"], first.json()["rows"]) == (1, 2, 3)
    # The same file again: the version it made; another file: the next version.
    assert _put(client, site, MAPPING).json()["version"] == 1
    second = _put(client, site, MAP_HEADER + f"d1,A0,{NORTH},{STRAIGHT},,1\n")
    assert second.json()["version"] == 2
    read = client.get(f"{API}/networks/{site.network_id}/detectors", headers=site.viewer.headers)
    assert read.status_code == 200
    assert read.json()["version"] == 2
    csv = client.get(f"{API}/networks/{site.network_id}/detectors/csv", headers=site.viewer.headers)
    assert csv.text == MAP_HEADER + f"d1,A0,{NORTH},{STRAIGHT},,1\n"
    assert csv.headers["content-type"].startswith("text/csv")
    assert _versions(core_services, site) == 2
    with core_services.db.unit_of_work(write=False) as session:
        audited = session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(
                AuditRecord.action == "traffic.detectors.map",
                AuditRecord.target == f"traffic_network:{site.network_id}",
            )
        )
    assert audited == 2


def test_a_bad_mapping_is_refused_with_its_lines_and_keeps_nothing(
    client: TestClient, core_services: Services, site: Site
) -> None:
    bad = MAP_HEADER + f"d1,A0,{NORTH},{RIGHT},,0.5\nd9,NOPE,{NORTH},{RIGHT},,1\n"
    refused = _put(client, site, bad)
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["code"] == "traffic.mapping_rejected"
    assert {f["line"] for f in problem["findings"]} == {2, 3}
    for content in ("", "just,a,header\n", "\xff\xfe", MAP_HEADER):
        assert _put(client, site, content).status_code == 422, content
    assert _versions(core_services, site) == 0


def test_detector_counts_are_kept_as_movement_counts_once(
    client: TestClient, core_services: Services, site: Site
) -> None:
    url = f"{API}/networks/{site.network_id}/counts/detectors"
    counts = COUNTS_HEADER + (
        "28800,29700,d1,100\n28800,29700,d2,40\n29700,30600,d1,8\n29700,30600,d2,5\n"
    )
    # Without a mapping there is nothing to turn them into.
    none = client.post(url, params={"day": DAY.isoformat()}, content=counts.encode(),
                       headers=site.engineer.headers)  # fmt: skip
    assert none.status_code == 404
    assert _put(client, site, MAPPING).status_code == 200
    kept = client.post(url, params={"day": DAY.isoformat()}, content=counts.encode(),
                       headers=site.engineer.headers)  # fmt: skip
    assert kept.status_code == 201, kept.text
    # Per interval: d1 split over two movements, d2 added to the straight one.
    assert kept.json()["rows"] == 4
    # The same file again is a replay: nothing more is kept.
    again = client.post(url, params={"day": DAY.isoformat()}, content=counts.encode(),
                        headers=site.engineer.headers)  # fmt: skip
    assert again.status_code == 201
    assert again.json()["replay"] is True
    # The profile holds every vehicle once: 100 + 40 + 8 + 5.
    profile = client.get(
        f"{API}/networks/{site.network_id}/profile",
        params={"first_day": DAY.isoformat(), "last_day": DAY.isoformat()},
        headers=site.viewer.headers,
    )
    assert profile.status_code == 200, profile.text
    assert sum(r["vehicles"] for r in profile.json()) == 153
    with core_services.db.unit_of_work(write=False) as session:
        batches = session.scalar(
            select(func.count())
            .select_from(TrafficCountBatch)
            .where(TrafficCountBatch.network_id == site.network_id)
        )
    assert batches == 1


def test_a_movements_detectors_come_together_or_not_at_all(
    client: TestClient, core_services: Services, site: Site
) -> None:
    # The straight movement is counted by d1 (three quarters) and d2: sent apart, neither
    # batch holds its whole count, and both are refused rather than kept short.
    assert _put(client, site, MAPPING).status_code == 200
    url = f"{API}/networks/{site.network_id}/counts/detectors"
    for alone in ("28800,29700,d1,100\n", "28800,29700,d2,40\n"):
        refused = client.post(url, params={"day": DAY.isoformat()},
                              content=(COUNTS_HEADER + alone).encode(),
                              headers=site.engineer.headers)  # fmt: skip
        assert refused.status_code == 422
        assert {f["kind"] for f in refused.json()["findings"]} == {"missing_detector"}
    together = client.post(url, params={"day": DAY.isoformat()},
                           content=(COUNTS_HEADER + "28800,29700,d1,100\n28800,29700,d2,40\n").encode(),
                           headers=site.engineer.headers)  # fmt: skip
    assert together.status_code == 201, together.text
    assert together.json()["rows"] == 2


def test_bad_detector_counts_are_refused_and_keep_nothing(
    client: TestClient, core_services: Services, site: Site
) -> None:
    assert _put(client, site, MAPPING).status_code == 200
    url = f"{API}/networks/{site.network_id}/counts/detectors"
    for counts in (
        COUNTS_HEADER + "28800,29700,d7,100\n",  # an unknown detector
        COUNTS_HEADER + "28800,29700,d1,-3\n",  # a negative count
        COUNTS_HEADER + "28800,29700,d1,lots\n",  # not a number
        "when,what\n1,2\n",  # not detector counts at all
    ):
        refused = client.post(url, params={"day": DAY.isoformat()}, content=counts.encode(),
                              headers=site.engineer.headers)  # fmt: skip
        assert refused.status_code == 422, (counts, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    with core_services.db.unit_of_work(write=False) as session:
        batches = session.scalar(
            select(func.count())
            .select_from(TrafficCountBatch)
            .where(TrafficCountBatch.network_id == site.network_id)
        )
    assert batches == 0


def test_readers_read_only_engineers_write_and_other_tenants_see_nothing(
    client: TestClient, core_services: Services, site: Site
) -> None:
    assert _put(client, site, MAPPING, site.viewer.headers).status_code == 403
    assert _put(client, site, MAPPING).status_code == 200
    for path in ("detectors", "detectors/csv"):
        url = f"{API}/networks/{site.network_id}/{path}"
        assert client.get(url, headers=site.viewer.headers).status_code == 200
        assert client.get(url, headers=site.outsider.headers).status_code == 404
    assert _put(client, site, MAPPING, site.outsider.headers).status_code == 404
    assert _versions(core_services, site) == 1


def test_the_console_shows_the_mapping_and_takes_a_new_version(
    api_app: FastAPI, core_services: Services, site: Site
) -> None:
    def browser(member: Member) -> Browser:
        test_client = TestClient(
            api_app, base_url="https://testserver", headers={**HTML, "Accept-Language": "en"}
        )
        opened = Browser(test_client)
        assert opened.sign_in(member.user.username, PASSWORD).status_code == 303
        return opened

    url = f"/console/traffic/networks/{site.network_id}"
    viewer, engineer = browser(site.viewer), browser(site.engineer)
    seen = viewer.client.get(url).text
    assert "No detector mapping yet." in text_of(seen)
    assert "Upload the mapping" not in seen

    def post(content: bytes | None):  # type: ignore[no-untyped-def]
        files = {"mapping": ("detectors.csv", content, "text/csv")} if content else None
        return engineer.client.post(
            f"{url}/detectors",
            data={"csrf_token": engineer.csrf()},
            files=files,
            follow_redirects=False,
        )

    missing = post(None)
    assert missing.status_code == 422
    assert "Choose a detector mapping file (CSV)." in missing.text
    bad = post((MAP_HEADER + "d1,NOPE,x,y,,1\n").encode())
    assert bad.status_code == 422
    assert "detector mapping rows were refused" in text_of(bad.text)
    assert _versions(core_services, site) == 0
    done = post(MAPPING.encode())
    assert done.status_code == 303, done.text[:300]
    shown = text_of(viewer.client.get(url).text)
    assert "Version 1: 2 detectors on 3 rows" in shown
    download = viewer.client.get(f"{url}/detectors.csv")
    assert download.status_code == 200
    assert download.text == MAPPING
    # A viewer cannot post the form either.
    refused = viewer.client.post(
        f"{url}/detectors",
        data={"csrf_token": viewer.csrf()},
        files={"mapping": ("detectors.csv", MAPPING.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert refused.status_code == 403
