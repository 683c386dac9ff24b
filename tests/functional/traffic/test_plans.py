"""Stored signal plans over the API and the console: drafted from counts, reviewed by a second
engineer (audited), issued to signals, rolled back in one action; the log of what each signal
runs is append-only; readers see, only engineers act, and another tenant sees nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update
from tests.factories.core import PASSWORD, Member, SiblingWorld, make_member, unique
from tests.factories.traffic import HEADER, counts_csv
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.audit.models import AuditRecord
from civicloud.core.errors import Conflict
from civicloud.core.services import Services
from civicloud.traffic import networks, sumo
from civicloud.traffic.models import TrafficPlan, TrafficPlanIssue
from civicloud.traffic.network import Network, read_network

API = "/api/v1/traffic"


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Network]:
    path = sumo.generate("corridor", tmp_path_factory.mktemp("net") / "corridor.net.xml")
    return path.read_bytes(), read_network(Path(path))


class Bureau:
    """A city's traffic bureau: two engineers, a viewer, and a corridor network."""

    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.drafter = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.checker = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.viewer = make_member(session, services.passwords, home=city, role="traffic_viewer")
            row = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("corridor"),
                content=content,
            )
            self.network_id = row.id
        self.outsider = world.b.admin


@pytest.fixture
def bureau(core_services: Services, world: SiblingWorld, corridor: tuple[bytes, Network]) -> Bureau:
    return Bureau(core_services, world, corridor[0])


def _draft(client: TestClient, bureau: Bureau, counts: str, name: str = "", **limits: float):  # type: ignore[no-untyped-def]
    return client.post(
        f"{API}/networks/{bureau.network_id}/plans",
        json={"name": name or unique("plan"), "counts_csv": counts, **limits},
        headers=bureau.drafter.headers,
    )


def _approved(client: TestClient, bureau: Bureau, counts: str) -> str:
    drafted = _draft(client, bureau, counts)
    assert drafted.status_code == 201, drafted.text
    plan_id = drafted.json()["id"]
    review = client.post(
        f"{API}/plans/{plan_id}/review", json={"approve": True}, headers=bureau.checker.headers
    )
    assert review.status_code == 200, review.text
    return str(plan_id)


def _active(client: TestClient, bureau: Bureau, member: Member | None = None) -> dict[str, str]:
    reply = client.get(
        f"{API}/networks/{bureau.network_id}/active", headers=(member or bureau.viewer).headers
    )
    assert reply.status_code == 200, reply.text
    return {a["tls_id"]: a["plan_id"] for a in reply.json()}


def _audited(services: Services, action: str, target: str) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == action, AuditRecord.target == target)
            )
            or 0
        )


def test_a_plan_is_drafted_reviewed_by_another_engineer_issued_and_rolled_back(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[bytes, Network],
) -> None:
    counts = counts_csv(corridor[1])
    drafted = _draft(client, bureau, counts, min_cycle_s=60, max_cycle_s=120)
    assert drafted.status_code == 201, drafted.text
    plan = drafted.json()
    assert plan["status"] == "draft"
    assert sorted(plan["figures"]) == ["A0", "B0", "C0"]
    for figures in plan["figures"].values():
        assert 60 <= figures["cycle_s"] <= 120
        assert 0 <= figures["offset_s"] < figures["cycle_s"]
        assert figures["delay_s"] < figures["before_delay_s"]
        assert "coordinated" in figures["flags"]
    plan_id = plan["id"]
    assert _audited(core_services, "traffic.plan.draft", f"traffic_plan:{plan_id}") == 1
    # The SUMO file is the plan, one tlLogic per signal.
    sumo_file = client.get(f"{API}/plans/{plan_id}/sumo", headers=bureau.viewer.headers)
    assert sumo_file.status_code == 200
    assert sumo_file.text.count('<tlLogic id="') == 3
    assert 'programID="civicloud"' in sumo_file.text

    # Not issued before it is approved, and not approved by the one who drafted it.
    early = client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers)
    assert (early.status_code, early.json()["code"]) == (409, "traffic.plan_state_conflict")
    own = client.post(
        f"{API}/plans/{plan_id}/review", json={"approve": True}, headers=bureau.drafter.headers
    )
    assert (own.status_code, own.json()["code"]) == (403, "traffic.own_plan_review")
    approved = client.post(
        f"{API}/plans/{plan_id}/review",
        json={"approve": True, "note": "Checked against the peak counts."},
        headers=bureau.checker.headers,
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["reviewed_by"]
    again = client.post(
        f"{API}/plans/{plan_id}/review", json={"approve": False}, headers=bureau.checker.headers
    )
    assert again.status_code == 409
    assert _audited(core_services, "traffic.plan.approve", f"traffic_plan:{plan_id}") == 1

    # Issued: every signal runs it.
    assert set(_active(client, bureau).values()) == {None}
    issued = client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers)
    assert issued.status_code == 200, issued.text
    assert _active(client, bureau) == {"A0": plan_id, "B0": plan_id, "C0": plan_id}
    # Issuing it again changes nothing.
    client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers)

    # A second plan for one signal only; rolling back goes one step at a time.
    second = _approved(client, bureau, counts_csv(corridor[1], main=140, side=40))
    one = client.post(
        f"{API}/plans/{second}/issue", json={"tls_ids": ["B0"]}, headers=bureau.checker.headers
    )
    assert one.status_code == 200, one.text
    assert _active(client, bureau) == {"A0": plan_id, "B0": second, "C0": plan_id}
    rollback = f"{API}/networks/{bureau.network_id}/signals/B0/rollback"
    stale = client.post(rollback, params={"seq": 1}, headers=bureau.checker.headers)
    assert (stale.status_code, stale.json()["code"]) == (409, "traffic.plan_state_conflict")
    back = client.post(rollback, params={"seq": 2}, headers=bureau.checker.headers)
    assert back.status_code == 200, back.text
    assert back.json()["plan_id"] == plan_id
    assert client.post(rollback, headers=bureau.checker.headers).json()["plan_id"] is None
    assert _active(client, bureau)["B0"] is None
    nothing = client.post(rollback, headers=bureau.checker.headers)
    assert (nothing.status_code, nothing.json()["code"]) == (409, "traffic.plan_state_conflict")
    target = f"traffic_network:{bureau.network_id}"
    assert _audited(core_services, "traffic.plan.rollback", target) == 2
    with core_services.db.unit_of_work(write=False) as session:
        log = session.scalars(
            select(TrafficPlanIssue)
            .where(
                TrafficPlanIssue.network_id == bureau.network_id, TrafficPlanIssue.tls_id == "B0"
            )
            .order_by(TrafficPlanIssue.seq)
        ).all()
        assert [(r.seq, r.action) for r in log] == [
            (1, "issue"),
            (2, "issue"),
            (3, "rollback"),
            (4, "rollback"),
        ]


def test_a_rejected_plan_is_never_issued(
    client: TestClient, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    plan_id = _draft(client, bureau, counts_csv(corridor[1])).json()["id"]
    rejected = client.post(
        f"{API}/plans/{plan_id}/review",
        json={"approve": False, "note": "The side streets need their own count."},
        headers=bureau.checker.headers,
    )
    assert rejected.json()["status"] == "rejected"
    refused = client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers)
    assert refused.status_code == 409
    assert set(_active(client, bureau).values()) == {None}


def test_readers_see_plans_and_act_on_none_and_other_tenants_see_nothing(
    client: TestClient, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    plan_id = _draft(client, bureau, counts_csv(corridor[1])).json()["id"]
    viewer = bureau.viewer.headers
    listed = client.get(f"{API}/networks/{bureau.network_id}/plans", headers=viewer)
    assert [p["id"] for p in listed.json()] == [plan_id]
    assert client.get(f"{API}/plans/{plan_id}", headers=viewer).status_code == 200
    for url, body in [
        (f"{API}/networks/{bureau.network_id}/plans", {"name": "x", "counts_csv": "a"}),
        (f"{API}/plans/{plan_id}/review", {"approve": True}),
        (f"{API}/plans/{plan_id}/issue", {}),
        (f"{API}/networks/{bureau.network_id}/signals/A0/rollback", None),
    ]:
        reply = client.post(url, json=body, headers=viewer)
        assert reply.status_code == 403, (url, reply.text)
    outsider = bureau.outsider.headers
    for url in [f"{API}/plans/{plan_id}", f"{API}/networks/{bureau.network_id}/plans"]:
        assert client.get(url, headers=outsider).status_code == 404
    assert client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=outsider).status_code == 404


@pytest.mark.parametrize(
    ("counts", "limits", "code"),
    [
        (HEADER + "0,900,A0,nowhere,elsewhere,s,10\n", {}, "traffic.counts_rejected"),
        (HEADER + "0,900,A0,x\n", {}, "traffic.counts_rejected"),
        ("not,a,counts,file\n", {}, "traffic.counts_unreadable"),
        (None, {"min_cycle_s": 120, "max_cycle_s": 60}, "traffic.invalid_timing_limits"),
        (None, {"min_green_s": 0}, "traffic.invalid_timing_limits"),
    ],
)
def test_bad_counts_or_limits_are_refused_and_store_nothing(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    corridor: tuple[bytes, Network],
    counts: str | None,
    limits: dict[str, float],
    code: str,
) -> None:
    reply = _draft(client, bureau, counts or counts_csv(corridor[1]), **limits)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == code
    if code == "traffic.counts_rejected":
        assert reply.json()["findings"][0]["line"] == 2
    with core_services.db.unit_of_work(write=False) as session:
        stored = session.scalar(
            select(func.count())
            .select_from(TrafficPlan)
            .where(TrafficPlan.network_id == bureau.network_id)
        )
        assert stored == 0


def test_a_taken_name_and_an_unknown_signal_are_refused(
    client: TestClient, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    counts = counts_csv(corridor[1])
    assert _draft(client, bureau, counts, name="Morning peak").status_code == 201
    taken = _draft(client, bureau, counts, name="Morning peak")
    assert (taken.status_code, taken.json()["code"]) == (409, "traffic.plan_state_conflict")
    plan_id = _approved(client, bureau, counts)
    unknown = client.post(
        f"{API}/plans/{plan_id}/issue", json={"tls_ids": ["Z9"]}, headers=bureau.checker.headers
    )
    assert unknown.status_code == 422
    assert set(_active(client, bureau).values()) == {None}


def test_the_issue_log_is_append_only_and_one_change_per_step(
    client: TestClient, core_services: Services, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    plan_id = _approved(client, bureau, counts_csv(corridor[1]))
    client.post(f"{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers)
    mine = TrafficPlanIssue.network_id == bureau.network_id
    for statement in (
        update(TrafficPlanIssue).where(mine).values(issued_by="x"),
        delete(TrafficPlanIssue).where(mine),
    ):
        # PostgreSQL's trigger raises; SQLite's aborts the statement (a Conflict, as the unit of
        # work reports a refused write). Either way the log is as it was.
        with (
            pytest.raises(Exception, match=r"append-only|stored the same thing"),
            core_services.db.unit_of_work() as session,
        ):
            session.execute(statement)
        with core_services.db.unit_of_work(write=False) as session:
            kept = session.scalars(select(TrafficPlanIssue.issued_by).where(mine)).all()
            assert len(kept) == 3
            assert "x" not in kept
    # Two changes of one signal in one step collide on the log's key: one Conflict.
    with core_services.db.unit_of_work(write=False) as session:
        current = session.scalars(
            select(TrafficPlanIssue.seq).where(mine, TrafficPlanIssue.tls_id == "A0")
        ).one()
    duplicate = TrafficPlanIssue(
        network_id=bureau.network_id,
        tls_id="A0",
        seq=current,
        action="rollback",
        plan_id=None,
        prior_id=None,
        issued_by="test",
    )
    with pytest.raises(Conflict), core_services.db.unit_of_work() as session:
        session.add(duplicate)
    assert _active(client, bureau)["A0"] == plan_id


# --- the console ------------------------------------------------------------------------------


@pytest.fixture
def signed_in(api_app: FastAPI) -> Iterator[Callable[[Member], Browser]]:
    opened: list[TestClient] = []

    def make(member: Member) -> Browser:
        test_client = TestClient(
            api_app, base_url="https://testserver", headers={**HTML, "Accept-Language": "en"}
        )
        opened.append(test_client)
        browser = Browser(test_client)
        reply = browser.sign_in(member.user.username, PASSWORD)
        assert reply.status_code == 303, reply.text
        return browser

    yield make
    for test_client in opened:
        test_client.close()


def test_the_console_drafts_reviews_issues_and_rolls_back(
    signed_in: Callable[[Member], Browser], bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    drafter, checker, viewer = (
        signed_in(bureau.drafter),
        signed_in(bureau.checker),
        signed_in(bureau.viewer),
    )
    network_url = f"/console/traffic/networks/{bureau.network_id}"
    # A viewer is offered no action.
    seen = viewer.client.get(network_url).text
    assert "Draft the plan" not in seen
    assert "Roll back" not in seen
    page = drafter.client.get(network_url).text
    assert "Draft the plan" in page
    # A draft without a file is refused beside the field, and nothing is drafted.
    empty = drafter.client.post(
        f"{network_url}/plans",
        data={"name": "x", "min_cycle": "60", "max_cycle": "150", "csrf_token": drafter.csrf()},
        follow_redirects=False,
    )
    assert empty.status_code == 422
    assert "Choose a counts file" in empty.text
    posted = drafter.client.post(
        f"{network_url}/plans",
        data={
            "name": "Weekday peak",
            "min_cycle": "60",
            "max_cycle": "120",
            "csrf_token": drafter.csrf(),
        },
        files={"counts": ("counts.csv", counts_csv(corridor[1]).encode(), "text/csv")},
        follow_redirects=False,
    )
    assert posted.status_code == 303, posted.text
    plan_url = posted.headers["location"].split("?")[0]
    plan_id = uuid.UUID(plan_url.rsplit("/", 1)[1])
    own = drafter.client.get(plan_url).text
    assert "Another engineer reviews this plan" in own
    assert 'value="approve"' not in own
    review_page = checker.client.get(plan_url).text
    # The chart: a before and an after bar per signal.
    assert len(re.findall(r'class="traffic-bar-before"', review_page)) >= 3
    assert 'value="approve"' in review_page
    approved = checker.submit(f"{plan_url}/review", {"decision": "approve", "note": "ok"})
    assert approved.status_code == 303
    issued = checker.submit(f"{plan_url}/issue")
    assert issued.status_code == 303
    after = text_of(checker.client.get(network_url).text)
    assert after.count("Weekday peak") >= 3
    # The form names the change it rolls back (the issue, seq 1): sent twice, it acts once.
    assert 'name="seq" value="1"' in checker.client.get(network_url).text
    back = checker.submit(f"{network_url}/signals/A0/rollback", {"seq": "1"})
    assert back.status_code == 303
    again = checker.submit(f"{network_url}/signals/A0/rollback", {"seq": "1"})
    assert again.status_code == 409
    assert "changed meanwhile" in again.text
    # Rolled back to the network's own program, there is nothing more to roll back.
    last = checker.submit(f"{network_url}/signals/A0/rollback", {"seq": "2"})
    assert last.status_code == 409
    assert "nothing to roll back" in last.text
    # The viewer cannot post the forms either.
    assert viewer.submit(f"/console/traffic/plans/{plan_id}/issue").status_code == 403


# --- corridors: time-space diagrams -------------------------------------------------------------


def test_a_plans_corridors_come_with_their_bands_before_and_after(
    client: TestClient, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    drafted = _draft(client, bureau, counts_csv(corridor[1]), min_cycle_s=60, max_cycle_s=120)
    assert drafted.status_code == 201, drafted.text
    plan = drafted.json()
    reply = client.get(f"{API}/plans/{plan['id']}/corridors", headers=bureau.viewer.headers)
    assert reply.status_code == 200, reply.text
    (found,) = reply.json()
    assert [s["tls_id"] for s in found["signals"]] == ["A0", "B0", "C0"]
    assert found["two_way"]
    assert found["length_m"] == 600.0
    cycle = plan["figures"]["A0"]["cycle_s"]
    # The plan's signals share one cycle; the band is a run of seconds within it.
    assert found["after"]["cycle_s"] == cycle
    for direction in ("forward", "backward"):
        band = found["after"][direction]["band"]
        assert 0 <= band["start_s"] < cycle
        assert 0 <= band["width_s"] <= cycle
        greens = found["after"][direction]["greens"]
        assert len(greens) == 3
        assert all(0 <= a < b <= found["after"]["horizon_s"] for per in greens for a, b in per)
    # Another tenant sees nothing of it.
    other = client.get(f"{API}/plans/{plan['id']}/corridors", headers=bureau.outsider.headers)
    assert other.status_code == 404


def test_the_plan_page_draws_a_corridors_time_space_diagram(
    client: TestClient,
    signed_in: Callable[[Member], Browser],
    bureau: Bureau,
    corridor: tuple[bytes, Network],
) -> None:
    drafted = _draft(client, bureau, counts_csv(corridor[1]), min_cycle_s=60, max_cycle_s=120)
    plan_url = f"/console/traffic/plans/{drafted.json()['id']}"
    viewer = signed_in(bureau.viewer)
    page = viewer.client.get(plan_url).text
    assert "Corridors: time-space diagram" in page
    # Two diagrams (the network's own program, then the plan): red lines per signal and
    # direction, green where the through movement may go.
    assert page.count('class="traffic-timespace"') == 2
    assert page.count('class="traffic-red"') == 2 * 3 * 2
    assert 'class="traffic-green"' in page
    assert "A0 → B0 → C0" in text_of(page)
    # A corridor that does not exist shows the longest one, never an error.
    for chosen in ("7", "abc", "-1"):
        assert viewer.client.get(f"{plan_url}?corridor={chosen}").status_code == 200
    chinese = viewer.client.get(plan_url, headers={"Accept-Language": "zh"}).text
    assert "时距图" in chinese
