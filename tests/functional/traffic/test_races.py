"""Clients at once on Traffic's write routes, over a real socket, on both databases (two hundred
where a request is cheap; fewer where each one drafts a plan or validates a batch of its own):
every answer is the one its request deserves (201, 200, 409, 422), never a 500 or a 503, and
what is kept afterwards is right — one plan of a name, one review of a plan, one issue per
signal however often it is sent, one step rolled back, a counts batch kept once, and of many
batches of the same intervals only one."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from tests.factories.core import SiblingWorld, make_member, unique
from tests.factories.traffic import counts_csv
from tests.functional.live_server import serving

from civicloud.app import create_app
from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.traffic import networks, sumo
from civicloud.traffic.models import TrafficCountBatch, TrafficPlan, TrafficPlanIssue
from civicloud.traffic.network import Network, read_network

pytestmark = pytest.mark.slow

CLIENTS = 200
#: Clients that each draft a plan (an optimisation each) or send a batch of their own.
COSTLY_CLIENTS = 40
API = "/api/v1/traffic"


@pytest.fixture(scope="module")
def server(core_services: Services) -> Iterator[str]:
    app: FastAPI = create_app(services=core_services)
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Network]:
    path = sumo.generate("corridor", tmp_path_factory.mktemp("net") / "corridor.net.xml")
    return path.read_bytes(), read_network(Path(path))


class Bureau:
    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.drafter = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.checker = make_member(
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
def bureau(core_services: Services, world: SiblingWorld, corridor: tuple[bytes, Network]) -> Bureau:
    return Bureau(core_services, world, corridor[0])


def all_at_once(
    send: Callable[[httpx2.Client, int], httpx2.Response], clients: int = CLIENTS
) -> Counter[int]:
    """Run ``send(client, n)`` for ``clients`` clients, all released together; count the statuses.
    Each client comes from an address of its own, so per-client limits do not answer."""
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one(n: int) -> None:
        with httpx2.Client(
            timeout=180, headers={"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
        ) as http:
            start.wait()
            try:
                response = send(http, n)
            except httpx2.HTTPError as exc:
                with lock:
                    failures.append(repr(exc))
                return
        with lock:
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, (statuses, failures[:5])
    assert sum(statuses.values()) == clients, statuses
    return statuses


def _count(services: Services, model: type, **where: object) -> int:
    with services.db.unit_of_work(write=False) as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(session.scalar(query) or 0)


def test_a_plan_is_drafted_reviewed_issued_and_rolled_back_once_by_clients_at_once(
    server: str, core_services: Services, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    counts = counts_csv(corridor[1])
    name = unique("peak")
    drafted = all_at_once(
        lambda http, n: http.post(
            f"{server}{API}/networks/{bureau.network_id}/plans",
            json={"name": name, "counts_csv": counts},
            headers=bureau.drafter.headers,
        ),
        COSTLY_CLIENTS,
    )
    assert drafted == Counter({201: 1, 409: COSTLY_CLIENTS - 1}), drafted
    assert _count(core_services, TrafficPlan, network_id=bureau.network_id) == 1
    with core_services.db.unit_of_work(write=False) as session:
        plan_id = session.scalars(
            select(TrafficPlan.id).where(TrafficPlan.network_id == bureau.network_id)
        ).one()
    reviewed = all_at_once(
        lambda http, n: http.post(
            f"{server}{API}/plans/{plan_id}/review",
            json={"approve": True, "note": f"client {n}"},
            headers=bureau.checker.headers,
        )
    )
    assert reviewed == Counter({200: 1, 409: CLIENTS - 1}), reviewed
    issued = all_at_once(
        lambda http, n: http.post(
            f"{server}{API}/plans/{plan_id}/issue", json={}, headers=bureau.checker.headers
        )
    )
    # Issuing a plan its signals already run changes nothing: every client is answered, and
    # each signal's log has one issue.
    assert issued == Counter({200: CLIENTS}), issued
    assert _count(core_services, TrafficPlanIssue, network_id=bureau.network_id) == 3
    rolled = all_at_once(
        lambda http, n: http.post(
            f"{server}{API}/networks/{bureau.network_id}/signals/A0/rollback",
            params={"seq": 1},
            headers=bureau.checker.headers,
        )
    )
    assert rolled == Counter({200: 1, 409: CLIENTS - 1}), rolled
    assert _count(core_services, TrafficPlanIssue, network_id=bureau.network_id, tls_id="A0") == 2


def _batch(net: Network, day: str, count: int) -> dict[str, object]:
    signal = net.signals["A0"]
    rows = [
        {
            "interval_begin": f"{day}T08:{quarter * 15:02d}:00+08:00",
            "interval_end": f"{day}T{8 + (quarter + 1) // 4:02d}:{(quarter + 1) % 4 * 15:02d}:00+08:00",
            "tls_id": "A0",
            "from_edge": f,
            "to_edge": t,
            "count": count,
        }
        for quarter in range(4)
        for (f, t) in sorted(signal.movements())
    ]
    return {"rows": rows}


def test_counts_batches_sent_by_clients_at_once_are_kept_once(
    server: str, core_services: Services, bureau: Bureau, corridor: tuple[bytes, Network]
) -> None:
    url = f"{server}{API}/networks/{bureau.network_id}/counts"
    same = _batch(corridor[1], "2026-11-02", 20)
    sent = all_at_once(lambda http, n: http.post(url, json=same, headers=bureau.drafter.headers))
    # The same batch: one kept, every other a replay of it.
    assert sent == Counter({201: CLIENTS}), sent
    assert _count(core_services, TrafficCountBatch, network_id=bureau.network_id) == 1
    # Batches of the same intervals with other counts (each its own key): one is kept, the
    # others overlap it and are refused.
    other = all_at_once(
        lambda http, n: http.post(
            url, json=_batch(corridor[1], "2026-11-03", 20 + n), headers=bureau.drafter.headers
        ),
        COSTLY_CLIENTS,
    )
    assert other[201] == 1, other
    assert other[201] + other[409] + other[422] == COSTLY_CLIENTS, other
    assert _count(core_services, TrafficCountBatch, network_id=bureau.network_id) == 2
    profile = httpx2.get(
        f"{server}{API}/networks/{bureau.network_id}/profile",
        params={"first_day": "2026-11-02", "last_day": "2026-11-03"},
        headers=bureau.drafter.headers,
    )
    assert profile.status_code == 200
    movements = len(corridor[1].signals["A0"].movements())
    total = sum(r["vehicles"] for r in profile.json())
    # Day one's 20 per movement and quarter, and one client's batch of day two.
    assert (total - 20 * 4 * movements) % (4 * movements) == 0
    assert (
        20 * 4 * movements * 2 <= total < (20 + COSTLY_CLIENTS) * 4 * movements + 20 * 4 * movements
    )
