"""Stored plans evaluated in SUMO: requested over the API, the console and the CLI, run by the
job with its progress seen step by step, figures for the network's program, the plan and
actuated control; a SUMO failure becomes a failed evaluation; readers read, only engineers
request, and another tenant sees nothing."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.conftest import TEST_AUDIT_KEY
from tests.factories.core import PASSWORD, Member, SiblingWorld, make_member, unique
from tests.factories.traffic import counts_csv
from tests.functional.traffic.conftest import Run
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.jobs import JobEnv
from civicloud.core.services import Services
from civicloud.traffic import MODULE, evaluations, jobs, networks, simulate
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.models import TrafficEvaluation
from civicloud.traffic.network import Network, read_network

API = "/api/v1/traffic"


@pytest.fixture(scope="module")
def junction(tmp_path_factory: pytest.TempPathFactory, junction_file: bytes) -> Network:
    path = tmp_path_factory.mktemp("net") / "junction.net.xml"
    path.write_bytes(junction_file)
    return read_network(Path(path))


class Bureau:
    """A city's traffic bureau: an engineer, a viewer, a junction and a draft plan for it."""

    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.engineer = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.viewer = make_member(session, services.passwords, home=city, role="traffic_viewer")
            row = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("junction"),
                content=content,
            )
            self.network_id = row.id
        self.outsider = world.b.admin
        self.counts = ""
        self.plan_id = ""

    def draft(self, client: TestClient, counts: str) -> str:
        drafted = client.post(
            f"{API}/networks/{self.network_id}/plans",
            json={"name": unique("plan"), "counts_csv": counts},
            headers=self.engineer.headers,
        )
        assert drafted.status_code == 201, drafted.text
        self.counts, self.plan_id = counts, str(drafted.json()["id"])
        return self.plan_id


@pytest.fixture
def bureau(
    core_services: Services,
    world: SiblingWorld,
    junction_file: bytes,
    junction: Network,
    client: TestClient,
) -> Bureau:
    made = Bureau(core_services, world, junction_file)
    made.draft(client, counts_csv(junction, main=110, side=35))
    return made


def _request(client: TestClient, bureau: Bureau, member: Member | None = None, **body: Any):  # type: ignore[no-untyped-def]
    return client.post(
        f"{API}/plans/{bureau.plan_id}/evaluations",
        json=body,
        headers=(member or bureau.engineer).headers,
    )


def _env(services: Services) -> JobEnv:
    return JobEnv(
        services=services,
        module=MODULE,
        context=services.context("traffic", TrafficContext),
        settings=services.section("traffic"),
        now=utcnow(),
    )


def _run_by_the_job(services: Services, evaluation_id: str) -> str | None:
    """The job lists what is due and handles this evaluation (others in the shared database
    belong to other tests and are left to them)."""
    env = _env(services)
    with services.db.unit_of_work(write=False) as session:
        due = jobs.evaluate_plans.items(session, env)
    assert uuid.UUID(evaluation_id) in due
    return services.db.run(
        lambda session: jobs.evaluate_plans.handle(session, env, uuid.UUID(evaluation_id))
    )


def _this_installation(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line reaches the tests' database with its audit key, as a server's would."""
    monkeypatch.setenv("CIVICLOUD_DATABASE_URL", services.settings.effective_database_url)
    monkeypatch.setenv("CIVICLOUD_AUDIT_KEY", TEST_AUDIT_KEY.get_secret_value())


@pytest.fixture
def signed_in(api_app: FastAPI) -> Iterator[Callable[[Member, str], Browser]]:
    opened: list[TestClient] = []

    def make(member: Member, language: str = "en") -> Browser:
        test_client = TestClient(
            api_app, base_url="https://testserver", headers={**HTML, "Accept-Language": language}
        )
        opened.append(test_client)
        browser = Browser(test_client)
        reply = browser.sign_in(member.user.username, PASSWORD)
        assert reply.status_code == 303, reply.text
        return browser

    yield make
    for test_client in opened:
        test_client.close()


@pytest.mark.slow
def test_a_stored_plan_is_evaluated_by_the_job_with_its_progress_seen_as_it_goes(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    signed_in: Callable[[Member, str], Browser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an evaluation of the plan requested with the counts it was drafted from
    requested = _request(client, bureau, seeds=1, counts_csv=bureau.counts)
    assert requested.status_code == 202, requested.text
    queued = requested.json()
    assert (queued["status"], queued["steps_done"], queued["steps_total"]) == ("queued", 0, 3)
    evaluation_id = queued["id"]
    # While it waits, its page says so and refreshes itself.
    engineer = signed_in(bureau.engineer, "en")
    waiting = engineer.client.get(f"/console/traffic/evaluations/{evaluation_id}")
    assert waiting.status_code == 200
    assert waiting.headers["Refresh"] == "5"
    assert 'id="evaluation-progress"' in waiting.text
    assert "<progress" in waiting.text
    # Every step, as a reader sees it in a transaction of its own while the run goes on.
    seen: list[tuple[str, int]] = []
    real = simulate.evaluate

    def watched(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        def step(done: int, total: int, name: str) -> None:
            progress(done, total, name)
            reply = client.get(f"{API}/evaluations/{evaluation_id}", headers=bureau.viewer.headers)
            seen.append((reply.json()["status"], reply.json()["steps_done"]))

        return real(*args, progress=step, **kwargs)

    monkeypatch.setattr(evaluations.simulate, "evaluate", watched)

    # When the job runs it
    outcome = _run_by_the_job(core_services, evaluation_id)

    # Then the steps went by one by one, and it ended with every control's figures
    assert outcome == "done"
    assert seen == [("running", 1), ("running", 2), ("running", 3)]
    done = client.get(f"{API}/evaluations/{evaluation_id}", headers=bureau.viewer.headers).json()
    assert (done["status"], done["steps_done"], done["steps_total"]) == ("done", 3, 3)
    assert done["error"] is None
    controls = {c["name"]: c for c in done["controls"]}
    assert list(controls) == ["network", "plan", "actuated"]
    for control in controls.values():
        assert len(control["runs"]) == 1
        assert control["vehicles"] > 0
        assert control["mean_travel_time_s"] > 0
        low, high = control["total_delay_min_vehh"], control["total_delay_max_vehh"]
        assert low <= control["total_delay_vehh"] <= high
    assert controls["plan"]["total_delay_vehh"] < controls["network"]["total_delay_vehh"]
    listed = client.get(f"{API}/plans/{bureau.plan_id}/evaluations", headers=bureau.viewer.headers)
    assert [e["id"] for e in listed.json()] == [evaluation_id]

    # And the console shows the charts and the table, numbers in the page's language
    page = engineer.client.get(f"/console/traffic/evaluations/{evaluation_id}")
    assert page.status_code == 200
    assert "Refresh" not in page.headers
    # A chart per figure (one all zero, as vehicles not inserted at this demand, is left out:
    # the table has it).
    drawn = [
        key
        for key in ("total_delay_vehh", "mean_travel_time_s", "mean_waiting_s",
                    "mean_time_loss_s", "stops", "vehicles", "not_inserted")
        if any(c[key] for c in controls.values())
    ]  # fmt: skip
    assert page.text.count('class="chart chart-bars"') == len(drawn) >= 6
    table = html.unescape(text_of(page.text.split('id="evaluation-table"')[1].split("</table>")[0]))
    assert "The network's own program" in table
    assert "SUMO's actuated control (reference)" in table
    delay = f"{controls['plan']['total_delay_vehh']:.1f}"
    assert f"{delay} ({delay}..{delay})" in table
    chinese = signed_in(bureau.viewer, "zh").client.get(
        f"/console/traffic/evaluations/{evaluation_id}"
    )
    assert "感应控制" in chinese.text
    assert "SUMO" not in text_of(chinese.text.split("<main")[1])
    plan_page = engineer.client.get(f"/console/traffic/plans/{bureau.plan_id}").text
    assert f"/console/traffic/evaluations/{evaluation_id}" in plan_page


@pytest.mark.slow
def test_the_cli_evaluates_a_stored_plan_with_its_design_hour_kept(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    civicloud_traffic: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the plan's counts, given once on the command line of this installation
    _this_installation(core_services, monkeypatch)
    counts = tmp_path / "counts.csv"
    counts.write_text(bureau.counts)
    data_dir = str(core_services.settings.data_dir)
    # When the command runs an evaluation, then a second one without the counts
    code, output = civicloud_traffic(
        "evaluate-stored",
        "--plan-id",
        bureau.plan_id,
        "--seeds",
        "1",
        "--counts",
        str(counts),
        "--data-dir",
        data_dir,
    )
    # Then its progress and the same table as the file path's are printed, and it is stored
    assert code == 0, output
    assert "[3/3]" in output
    rows = {
        line.split()[1]: line
        for line in output.splitlines()
        if line.strip().startswith("│") and line.split()[1] in {"network", "plan", "actuated"}
    }
    assert set(rows) == {"network", "plan", "actuated"}
    assert float(rows["plan"].split()[3]) < float(rows["network"].split()[3])
    stored = re.search(r"stored as evaluation ([0-9a-f-]{36})", output)
    assert stored is not None
    reply = client.get(f"{API}/evaluations/{stored.group(1)}", headers=bureau.viewer.headers)
    assert reply.json()["status"] == "done"
    # The design hour was kept: a second evaluation needs no counts (refused seeds first).
    code, output = civicloud_traffic(
        "evaluate-stored", "--plan-id", bureau.plan_id, "--seeds", "11", "--data-dir", data_dir
    )
    assert code == 2
    assert "between 1 and 10" in output
    assert "Traceback" not in output
    again = _request(client, bureau, seeds=2)
    assert again.status_code == 202, again.text
    with core_services.db.unit_of_work(write=False) as session:
        first, second = (
            session.get_one(TrafficEvaluation, uuid.UUID(i))
            for i in (stored.group(1), again.json()["id"])
        )
        assert second.demand == first.demand
        assert second.counts_sha256 == first.counts_sha256


def test_a_sumo_failure_makes_the_evaluation_failed_never_a_crash(
    client: TestClient,
    core_services: Services,
    bureau: Bureau,
    signed_in: Callable[[Member, str], Browser],
    monkeypatch: pytest.MonkeyPatch,
    civicloud_traffic: Run,
) -> None:
    # Given SUMO that stops with an error
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise simulate.sumo_error("Error: the network could not be loaded")

    monkeypatch.setattr(evaluations.simulate, "evaluate", broken)
    evaluation_id = _request(client, bureau, seeds=1, counts_csv=bureau.counts).json()["id"]

    # When the job runs it
    outcome = _run_by_the_job(core_services, evaluation_id)

    # Then it is failed with SUMO's reason, over the API and on its page in either language
    assert outcome == "failed"
    reply = client.get(f"{API}/evaluations/{evaluation_id}", headers=bureau.viewer.headers)
    assert reply.status_code == 200
    failed = reply.json()
    assert (failed["status"], failed["error_code"]) == ("failed", "traffic.simulation_failed")
    assert "SUMO stopped with an error: Error: the network could not be loaded" in failed["error"]
    assert failed["controls"] == []
    page = signed_in(bureau.viewer, "zh").client.get(
        f"/console/traffic/evaluations/{evaluation_id}"
    )
    assert page.status_code == 200
    assert "Refresh" not in page.headers
    assert "出错停止" in text_of(page.text.split('id="evaluation-error"')[1])
    # and the command says it in one line with a non-zero exit
    _this_installation(core_services, monkeypatch)
    code, output = civicloud_traffic(
        "evaluate-stored",
        "--plan-id",
        bureau.plan_id,
        "--seeds",
        "1",
        "--data-dir",
        str(core_services.settings.data_dir),
    )
    assert code == 1
    assert "The evaluation failed" in output
    assert "Traceback" not in output


def test_bad_requests_are_refused_readers_read_and_other_tenants_see_nothing(
    client: TestClient, core_services: Services, bureau: Bureau, junction: Network
) -> None:
    # The first evaluation needs the plan's own counts.
    needed = _request(client, bureau, seeds=1)
    assert (needed.status_code, needed.json()["code"]) == (422, "traffic.demand_needed")
    other = _request(client, bureau, seeds=1, counts_csv=counts_csv(junction, main=90))
    assert (other.status_code, other.json()["code"]) == (422, "traffic.counts_not_the_plans")
    for seeds in (0, 11):
        refused = _request(client, bureau, seeds=seeds, counts_csv=bureau.counts)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "traffic.invalid_seeds"
    unknown = client.post(
        f"{API}/plans/{uuid.uuid4()}/evaluations",
        json={"seeds": 1},
        headers=bureau.engineer.headers,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "traffic.plan_not_found")
    # A viewer may read but not request; another tenant's administrator sees nothing.
    viewer = _request(client, bureau, bureau.viewer, seeds=1, counts_csv=bureau.counts)
    assert viewer.status_code == 403, viewer.text
    outsider = _request(client, bureau, bureau.outsider, seeds=1, counts_csv=bureau.counts)
    assert outsider.status_code == 404
    queued = _request(client, bureau, seeds=1, counts_csv=bureau.counts)
    assert queued.status_code == 202
    evaluation_id = queued.json()["id"]
    one = f"{API}/evaluations/{evaluation_id}"
    assert client.get(one, headers=bureau.viewer.headers).status_code == 200
    listed = f"{API}/plans/{bureau.plan_id}/evaluations"
    assert client.get(listed, headers=bureau.viewer.headers).status_code == 200
    assert client.get(one, headers=bureau.outsider.headers).status_code == 404
    assert client.get(listed, headers=bureau.outsider.headers).status_code == 404
    missing = client.get(f"{API}/evaluations/{uuid.uuid4()}", headers=bureau.viewer.headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "traffic.evaluation_not_found")
    with core_services.db.unit_of_work(write=False) as session:
        kept = session.scalars(
            select(TrafficEvaluation.id).where(
                TrafficEvaluation.plan_id == uuid.UUID(bureau.plan_id)
            )
        ).all()
        assert [str(i) for i in kept] == [evaluation_id]
    # Never run here: mark it failed so that no job of another test picks it up.
    with core_services.db.unit_of_work() as session:
        evaluations.claim(session=session, evaluation_id=uuid.UUID(evaluation_id), now=utcnow())
        evaluations.fail(
            session=session,
            evaluation_id=uuid.UUID(evaluation_id),
            error=simulate.sumo_error("not run by this test"),
        )


def test_the_console_offers_the_form_to_engineers_only(
    signed_in: Callable[[Member, str], Browser], bureau: Bureau, core_services: Services
) -> None:
    plan_url = f"/console/traffic/plans/{bureau.plan_id}"
    viewer, engineer = signed_in(bureau.viewer, "en"), signed_in(bureau.engineer, "en")
    seen = viewer.client.get(plan_url).text
    assert "Evaluation in SUMO" in seen
    assert "Evaluate in SUMO" not in seen
    assert 'id="evaluation-form"' not in seen
    assert 'id="evaluation-form"' in engineer.client.get(plan_url).text
    # The viewer cannot post the form either; bad seeds are refused with the reason.
    refused = viewer.submit(f"{plan_url}/evaluations", {"seeds": "1"})
    assert refused.status_code == 403
    bad = engineer.client.post(
        f"{plan_url}/evaluations",
        data={"seeds": "eleven", "csrf_token": engineer.csrf()},
        files={"counts": ("counts.csv", bureau.counts.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert bad.status_code == 422
    assert "The number of seeds must be between 1 and 10." in text_of(bad.text)
    posted = engineer.client.post(
        f"{plan_url}/evaluations",
        data={"seeds": "1", "csrf_token": engineer.csrf()},
        files={"counts": ("counts.csv", bureau.counts.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert posted.status_code == 303, posted.text
    page = engineer.client.get(posted.headers["location"])
    assert page.status_code == 200
    assert page.headers["Refresh"] == "5"
    assert "0 of 3 runs done" in text_of(page.text)
    evaluation_id = uuid.UUID(posted.headers["location"].rsplit("/", 1)[1])
    with core_services.db.unit_of_work() as session:  # left to no other test's job
        evaluations.claim(session=session, evaluation_id=evaluation_id, now=utcnow())
        evaluations.fail(
            session=session,
            evaluation_id=evaluation_id,
            error=simulate.sumo_error("not run by this test"),
        )
