"""Stored time-of-day plans: the day cut into periods of similar demand, a program each and a
daily switch schedule, drafted from a counts file or from kept days, over the API and the
console; the file loads in SUMO; bad period counts are refused and store nothing."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import PASSWORD, Member, SiblingWorld, make_member, unique
from tests.factories.traffic import day_counts_csv
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.traffic import networks, plans, sumo
from civicloud.traffic.models import TrafficEvaluation, TrafficPlan
from civicloud.traffic.network import Network, read_network

API = "/api/v1/traffic"
#: A morning and an evening peak, quiet otherwise.
PEAKS = {7: 120, 8: 150, 17: 140, 18: 130}


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Network]:
    path = sumo.generate("corridor", tmp_path_factory.mktemp("net") / "corridor.net.xml")
    return path, read_network(path)


class Bureau:
    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.engineer = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.network_id = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("corridor"),
                content=content,
            ).id


@pytest.fixture
def bureau(core_services: Services, world: SiblingWorld, corridor: tuple[Path, Network]) -> Bureau:
    return Bureau(core_services, world, corridor[0].read_bytes())


def _plans(services: Services, network_id: uuid.UUID) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrafficPlan)
                .where(TrafficPlan.network_id == network_id)
            )
            or 0
        )


def _check_time_of_day(plan: dict[str, object], net: Network) -> None:
    sheet = plan["sheet"]
    assert isinstance(sheet, dict)
    assert sheet["time_of_day"] is True
    periods = sheet["periods"]
    # The peaks are periods of their own: four periods, the busiest the morning peak's.
    assert [p["start"] for p in periods] == ["07:00", "09:00", "17:00", "19:00"]
    assert sheet["design_period"] == "p1"
    design = next(p for p in periods if p["name"] == sheet["design_period"])
    for each in periods:
        assert sorted(each["figures"]) == sorted(net.signals)
        for figures in each["figures"].values():
            assert figures["delay_s"] <= figures["before_delay_s"]
    # The plan's own figures are its busiest period's.
    assert plan["figures"] == design["figures"]
    quiet = next(p for p in periods if p["start"] == "19:00")
    assert quiet["figures"]["A0"]["flow_vph"] < design["figures"]["A0"]["flow_vph"]
    assert [s["time_s"] for s in sheet["switches"]] == [7 * 3600, 9 * 3600, 17 * 3600, 19 * 3600]


def _sumo_loads(additional: bytes, net_file: Path, tmp_path: Path) -> None:
    """SUMO runs the network with the plan's programs and switch schedule, without errors."""
    path = tmp_path / "plan.add.xml"
    path.write_bytes(additional)
    root = ET.fromstring(additional)  # noqa: S314 - the server's own output
    assert len(root.findall("tlLogic")) == 4 * 3
    assert len(root.findall("WAUT")) == 3
    sumo.run(
        [sumo.binary("sumo"), "-n", net_file, "-a", path, "--begin", "0", "--end", "60",
         "--no-step-log", "--error-log", tmp_path / "errors.txt"],
    )  # fmt: skip
    assert (tmp_path / "errors.txt").read_text().strip() == ""


def test_a_time_of_day_plan_is_drafted_from_a_counts_file(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[Path, Network],
    tmp_path: Path,
) -> None:
    reply = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={
            "name": unique("weekday"),
            "counts_csv": day_counts_csv(corridor[1], PEAKS, days=2),
            "periods": 4,
        },
        headers=bureau.engineer.headers,
    )
    assert reply.status_code == 201, reply.text
    plan = reply.json()
    _check_time_of_day(plan, corridor[1])
    additional = client.get(f"{API}/plans/{plan['id']}/sumo", headers=bureau.engineer.headers)
    assert additional.status_code == 200
    _sumo_loads(additional.content, corridor[0], tmp_path)


def test_a_time_of_day_plan_is_drafted_from_kept_days(
    client: TestClient, bureau: Bureau, corridor: tuple[Path, Network]
) -> None:
    kept = client.post(
        f"{API}/networks/{bureau.network_id}/counts/csv",
        params={"day": "2026-11-02"},
        content=day_counts_csv(corridor[1], PEAKS).encode(),
        headers={**bureau.engineer.headers, "Content-Type": "text/csv"},
    )
    assert kept.status_code == 201, kept.text
    reply = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={
            "name": unique("kept"),
            "first_day": "2026-11-02",
            "last_day": "2026-11-02",
            "periods": 4,
        },
        headers=bureau.engineer.headers,
    )
    assert reply.status_code == 201, reply.text
    _check_time_of_day(reply.json(), corridor[1])


@pytest.mark.parametrize("periods", [0, 9, -1])
def test_a_period_count_out_of_range_is_refused_and_stores_nothing(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[Path, Network],
    periods: int,
) -> None:
    reply = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={
            "name": unique("bad"),
            "counts_csv": day_counts_csv(corridor[1], PEAKS),
            "periods": periods,
        },
        headers=bureau.engineer.headers,
    )
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert _plans(core_services, bureau.network_id) == 0


@pytest.fixture
def signed_in(api_app: FastAPI) -> Iterator[Callable[[Member], Browser]]:
    opened: list[TestClient] = []

    def make(member: Member) -> Browser:
        test_client = TestClient(
            api_app, base_url="https://testserver", headers={**HTML, "Accept-Language": "en"}
        )
        opened.append(test_client)
        browser = Browser(test_client)
        assert browser.sign_in(member.user.username, PASSWORD).status_code == 303
        return browser

    yield make
    for test_client in opened:
        test_client.close()


def test_the_console_drafts_a_time_of_day_plan_and_shows_its_periods(
    core_services: Services,
    signed_in: Callable[[Member], Browser],
    bureau: Bureau,
    corridor: tuple[Path, Network],
) -> None:
    engineer = signed_in(bureau.engineer)
    network_url = f"/console/traffic/networks/{bureau.network_id}"
    page = engineer.client.get(network_url).text
    assert "Plans for the day" in page
    counts = day_counts_csv(corridor[1], PEAKS).encode()

    def draft(periods: str):  # type: ignore[no-untyped-def]
        return engineer.client.post(
            f"{network_url}/plans",
            data={
                "name": unique("day"),
                "min_cycle": "60",
                "max_cycle": "120",
                "periods": periods,
                "csrf_token": engineer.csrf(),
            },
            files={"counts": ("counts.csv", counts, "text/csv")},
            follow_redirects=False,
        )

    # A period count no list offers is refused beside the field, and nothing is drafted.
    for bad in ("0", "12", "x"):
        refused = draft(bad)
        assert refused.status_code == 422
        assert "Choose how many plans the day has." in refused.text
    assert _plans(core_services, bureau.network_id) == 0
    posted = draft("4")
    assert posted.status_code == 303, posted.text
    plan_page = text_of(engineer.client.get(posted.headers["location"]).text)
    assert "Periods of the day" in plan_page
    for start in ("07:00", "09:00", "17:00", "19:00"):
        assert start in plan_page
    assert "busiest" in plan_page


def test_a_counts_file_larger_than_other_requests_may_be_is_taken(
    client: TestClient, core_services: Services, bureau: Bureau, corridor: tuple[Path, Network]
) -> None:
    counts = day_counts_csv(corridor[1], PEAKS, days=8)
    assert len(counts) > core_services.settings.web.max_body_bytes
    reply = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={"name": unique("week"), "counts_csv": counts},
        headers=bureau.engineer.headers,
    )
    assert reply.status_code == 201, reply.text[:300]


def test_a_time_of_day_plan_is_proven_with_its_busiest_periods_programs(
    client: TestClient, core_services: Services, bureau: Bureau, corridor: tuple[Path, Network]
) -> None:
    reply = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={
            "name": unique("day"),
            "counts_csv": day_counts_csv(corridor[1], PEAKS),
            "periods": 4,
        },
        headers=bureau.engineer.headers,
    )
    assert reply.status_code == 201, reply.text
    with core_services.db.unit_of_work(write=False) as session:
        plan = session.get_one(TrafficPlan, uuid.UUID(reply.json()["id"]))
        design = plans.design_additional(plan)
    root = ET.fromstring(design)  # noqa: S314 - the server's own output
    # One program per signal and no switch schedule: the busiest period's (07:00-09:00).
    assert root.findall("WAUT") == []
    logics = {logic.get("id"): logic for logic in root.findall("tlLogic")}
    assert sorted(logics) == sorted(corridor[1].signals)
    busiest = next(p for p in reply.json()["sheet"]["periods"] if p["name"] == "p1")
    for signal in busiest["signals"]:
        phases = logics[signal["tls_id"]].findall("phase")
        assert [float(p.get("duration", "0")) for p in phases] == [
            p["duration_s"] for p in signal["phases"]
        ]


def test_digits_no_form_takes_are_refused_or_ignored_never_an_error(
    client: TestClient,
    signed_in: Callable[[Member], Browser],
    bureau: Bureau,
    corridor: tuple[Path, Network],
) -> None:
    engineer = signed_in(bureau.engineer)
    network_url = f"/console/traffic/networks/{bureau.network_id}"
    refused = engineer.client.post(
        f"{network_url}/plans",
        data={"name": unique("x"), "min_cycle": "60", "max_cycle": "120", "periods": "²",
              "csrf_token": engineer.csrf()},
        files={"counts": ("c.csv", day_counts_csv(corridor[1], PEAKS).encode(), "text/csv")},
        follow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 422
    drafted = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={"name": unique("p"), "counts_csv": day_counts_csv(corridor[1], PEAKS)},
        headers=bureau.engineer.headers,
    )
    plan_url = f"/console/traffic/plans/{drafted.json()['id']}"
    assert engineer.client.get(f"{plan_url}?corridor=²").status_code == 200
    back = engineer.submit(f"{network_url}/signals/A0/rollback", {"seq": "²"})
    assert back.status_code in {403, 409}


def test_a_plan_may_set_its_offsets_for_bandwidth(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[Path, Network],
    signed_in: Callable[[Member], Browser],
) -> None:
    counts = day_counts_csv(corridor[1], PEAKS)
    url = f"{API}/networks/{bureau.network_id}/plans"
    banded = client.post(
        url,
        json={"name": unique("band"), "counts_csv": counts, "offsets": "bandwidth"},
        headers=bureau.engineer.headers,
    )
    assert banded.status_code == 201, banded.text
    plan = banded.json()
    assert plan["limits"]["offsets"] == "bandwidth"
    assert all("banded" in f["flags"] for f in plan["figures"].values())
    by_delay = client.post(
        url, json={"name": unique("delay"), "counts_csv": counts}, headers=bureau.engineer.headers
    ).json()

    def bands(plan_id: str) -> int:
        reply = client.get(f"{API}/plans/{plan_id}/corridors", headers=bureau.engineer.headers)
        (found,) = reply.json()
        return sum(found["after"][way]["band"]["width_s"] for way in ("forward", "backward"))

    # The bands of the banded plan are at least the delay plan's (the same splits).
    assert bands(plan["id"]) >= bands(by_delay["id"])
    refused = client.post(
        url,
        json={"name": unique("bad"), "counts_csv": counts, "offsets": "widest"},
        headers=bureau.engineer.headers,
    )
    assert refused.status_code == 422
    # The console offers the choice, and refuses one it does not offer.
    engineer = signed_in(bureau.engineer)
    page = engineer.client.get(f"/console/traffic/networks/{bureau.network_id}").text
    assert 'name="offsets"' in page
    bad = engineer.client.post(
        f"/console/traffic/networks/{bureau.network_id}/plans",
        data={"name": unique("x"), "min_cycle": "60", "max_cycle": "120", "periods": "1",
              "offsets": "widest", "csrf_token": engineer.csrf()},
        files={"counts": ("c.csv", counts.encode(), "text/csv")},
        follow_redirects=False,
    )  # fmt: skip
    assert bad.status_code == 422
    assert "Choose what the offsets are set for." in bad.text


def test_the_console_evaluates_a_plan_drafted_from_kept_days(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[Path, Network],
    signed_in: Callable[[Member], Browser],
) -> None:
    kept = client.post(
        f"{API}/networks/{bureau.network_id}/counts/csv",
        params={"day": "2026-11-02"},
        content=day_counts_csv(corridor[1], PEAKS).encode(),
        headers={**bureau.engineer.headers, "Content-Type": "text/csv"},
    )
    assert kept.status_code == 201, kept.text
    drafted = client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={"name": unique("kept"), "first_day": "2026-11-02", "last_day": "2026-11-02"},
        headers=bureau.engineer.headers,
    )
    plan_id = drafted.json()["id"]
    engineer = signed_in(bureau.engineer)
    url = f"/console/traffic/plans/{plan_id}/evaluations"

    def request(**fields: str):  # type: ignore[no-untyped-def]
        return engineer.client.post(
            url,
            data={"seeds": "1", "csrf_token": engineer.csrf(), **fields},
            follow_redirects=False,
        )

    # Other days are not the plan's counts; a day no calendar has is refused plainly.
    wrong = request(first_day="2026-11-03", last_day="2026-11-03")
    assert wrong.status_code == 422
    assert request(first_day="2026-13-40").status_code == 422
    done = request(first_day="2026-11-02", last_day="2026-11-02")
    assert done.status_code == 303, done.text[:300]
    with core_services.db.unit_of_work(write=False) as session:
        queued = session.scalars(
            select(TrafficEvaluation).where(TrafficEvaluation.plan_id == uuid.UUID(plan_id))
        ).all()
    assert [e.status for e in queued] == ["queued"]
