"""Traffic's API (``/api/v1/traffic``): a tenant's road networks and their signals, and the signal
plans drafted, reviewed, issued and rolled back on them (thin adapters over ``plans``)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from civicloud.traffic import (
    countstore,
    evaluations,
    mappings,
    networks,
    plans,
    timeofday,
    timespace,
)
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.models import (
    TrafficDetectorMapping,
    TrafficEvaluation,
    TrafficNetwork,
    TrafficPlan,
)
from civicloud.traffic.optimize import Limits
from civicloud.web.bodies import BodyLimitRoute, takes_bodies_up_to
from civicloud.web.deps import ActorDep, SessionDep, services_of

router = APIRouter(prefix="/traffic", tags=["traffic"], route_class=BodyLimitRoute)
#: A plan drafted from a counts file sends the file inside JSON (escaped: a little larger).
DRAFT_BODY_BYTES = plans.MAX_COUNTS_BYTES + (plans.MAX_COUNTS_BYTES >> 3)
#: A JSON batch of counts: its most rows, each a few hundred bytes at most.
BATCH_BODY_BYTES = countstore.MAX_JSON_ROWS * 320


def traffic_context(request: Request) -> TrafficContext:
    """Traffic's context, as the application built it."""
    return services_of(request).context("traffic", TrafficContext)


class NetworkOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    source_name: str
    signals: int
    edges: int
    sha256: str
    created_at: datetime


class PhaseOut(BaseModel):
    duration_s: float
    state: str


class SignalOut(BaseModel):
    tls_id: str
    x: float
    y: float
    links: int
    program_id: str
    cycle_s: float
    phases: list[PhaseOut]


class NetworkDetail(NetworkOut):
    bounds: tuple[float, float, float, float]
    signal_list: list[SignalOut]


def _out(row: TrafficNetwork) -> NetworkOut:
    return NetworkOut.model_validate(row, from_attributes=True)


@router.get("/tenants/{tenant_id}/networks", name="traffic.network.list")
def list_networks(session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID) -> list[NetworkOut]:
    """A tenant's road networks."""
    rows = networks.list_networks(session=session, actor=actor, tenant_id=tenant_id)
    return [_out(row) for row in rows]


@router.get("/networks/{network_id}", name="traffic.network.get")
def get_network(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> NetworkDetail:
    """A network with its signals and their current programs."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    network = networks.load(row)
    return NetworkDetail(
        **_out(row).model_dump(),
        bounds=network.bounds,
        signal_list=[
            SignalOut(
                tls_id=s.id,
                x=s.x,
                y=s.y,
                links=s.size,
                program_id=s.program_id,
                cycle_s=s.program.cycle,
                phases=[PhaseOut(duration_s=p.duration, state=p.state) for p in s.program.phases],
            )
            for s in network.signals.values()
        ],
    )


# --- plans ----------------------------------------------------------------------------------


class PlanDraftIn(BaseModel):
    """A draft: a name, the counts (the CSV's text, or the days of the counts kept) and the
    engineer's limits; ``periods`` above 1 asks for a time-of-day plan of at most that many
    periods (its sheet then lists the periods, their switch times and each one's figures)."""

    name: str = Field(min_length=1, max_length=plans.MAX_NAME)
    counts_csv: str | None = Field(default=None, min_length=1, max_length=plans.MAX_COUNTS_BYTES)
    first_day: date | None = None
    last_day: date | None = None
    min_cycle_s: float = 60.0
    max_cycle_s: float = 150.0
    min_green_s: float = 5.0
    all_red: bool = False
    periods: int = Field(default=1, ge=1, le=timeofday.MAX_PERIODS)
    #: Coordinated offsets for the least delay, or for the widest bands along corridors.
    offsets: Literal["delay", "bandwidth"] = "delay"


class PlanReviewIn(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=plans.MAX_NOTE)


class PlanIssueIn(BaseModel):
    """The signals to issue the plan to; all of the plan's when empty."""

    tls_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=10_000
    )


class PlanOut(BaseModel):
    id: uuid.UUID
    network_id: uuid.UUID
    name: str
    status: str
    limits: dict[str, Any]
    counts_sha256: str
    created_by: str
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


class PlanDetail(PlanOut):
    #: Per signal: cycle, offset, greens, expected delay and LOS, and the same before.
    figures: dict[str, Any]
    sheet: dict[str, Any]


class ActiveOut(BaseModel):
    tls_id: str
    plan_id: uuid.UUID | None
    plan_name: str | None
    effective_at: datetime | None
    issued_by: str | None
    #: The signal's latest change (0: none); pass it to a rollback as ``seq``.
    seq: int = 0


def _plan_out(plan: TrafficPlan) -> PlanOut:
    return PlanOut.model_validate(plan, from_attributes=True)


def _plan_detail(plan: TrafficPlan) -> PlanDetail:
    return PlanDetail.model_validate(plan, from_attributes=True)


@router.post("/networks/{network_id}/plans", name="traffic.plan.draft", status_code=201)
@takes_bodies_up_to(DRAFT_BODY_BYTES)
def draft_plan(
    request: Request, session: SessionDep, actor: ActorDep, network_id: uuid.UUID, body: PlanDraftIn
) -> PlanDetail:
    """Draft a plan for every signal of the network from the counts' busiest hour, or a
    time-of-day plan (``periods`` > 1) with a program per period."""
    limits = Limits(
        min_cycle=body.min_cycle_s,
        max_cycle=body.max_cycle_s,
        min_green=body.min_green_s,
        all_red=body.all_red,
        offsets=body.offsets,
    )
    days = [d for d in (body.first_day, body.last_day) if d is not None]
    stored = (days[0], days[-1]) if days else None
    plan = plans.draft_plan(
        session=session,
        actor=actor,
        network_id=network_id,
        name=body.name,
        counts=body.counts_csv.encode() if body.counts_csv is not None else None,
        stored=stored,
        context=traffic_context(request),
        limits=limits,
        periods=body.periods,
    )
    return _plan_detail(plan)


@router.get("/networks/{network_id}/plans", name="traffic.plan.list")
def list_plans(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> list[PlanOut]:
    """The network's plans, newest first."""
    return [
        _plan_out(p) for p in plans.list_plans(session=session, actor=actor, network_id=network_id)
    ]


@router.get("/plans/{plan_id}", name="traffic.plan.get")
def get_plan(session: SessionDep, actor: ActorDep, plan_id: uuid.UUID) -> PlanDetail:
    """A plan with its timing sheet and its figures per signal."""
    return _plan_detail(plans.get_plan(session=session, actor=actor, plan_id=plan_id))


@router.get("/plans/{plan_id}/sumo", name="traffic.plan.sumo")
def plan_sumo(session: SessionDep, actor: ActorDep, plan_id: uuid.UUID) -> Response:
    """The plan as a SUMO additional file (one ``tlLogic`` per signal)."""
    plan = plans.get_plan(session=session, actor=actor, plan_id=plan_id)
    return Response(
        plan.additional,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="plan-{plan.id}.add.xml"'},
    )


class BandOut(BaseModel):
    start_s: int
    width_s: int


class DirectionOut(BaseModel):
    #: Per signal of the corridor, in its order: green intervals of the through movement, s.
    greens: list[list[tuple[float, float]]]
    #: Per signal: seconds after leaving the direction's first signal.
    arrival_s: list[int]
    band: BandOut | None


class DiagramOut(BaseModel):
    horizon_s: int
    cycle_s: float | None
    forward: DirectionOut
    backward: DirectionOut | None


class StopOut(BaseModel):
    tls_id: str
    distance_m: float
    travel_s: int


class CorridorOut(BaseModel):
    index: int
    signals: list[StopOut]
    length_m: float
    two_way: bool
    before: DiagramOut
    after: DiagramOut


def _diagram_out(d: timespace.Diagram) -> DiagramOut:
    def direction(x: timespace.Direction) -> DirectionOut:
        band = None if x.band is None else BandOut(start_s=x.band.start_s, width_s=x.band.width_s)
        return DirectionOut(
            greens=[list(g) for g in x.greens], arrival_s=list(x.arrival_s), band=band
        )

    return DiagramOut(
        horizon_s=d.horizon_s,
        cycle_s=d.cycle_s,
        forward=direction(d.forward),
        backward=direction(d.backward) if d.backward is not None else None,
    )


@router.get("/plans/{plan_id}/corridors", name="traffic.plan.corridors")
def plan_corridors(session: SessionDep, actor: ActorDep, plan_id: uuid.UUID) -> list[CorridorOut]:
    """The plan's corridors, longest first, each with its time-space diagram and progression
    bands under the network's own programs (before) and under the plan (after)."""
    found = timespace.plan_corridors(session=session, actor=actor, plan_id=plan_id)
    return [
        CorridorOut(
            index=c.index,
            signals=[
                StopOut(tls_id=s.signal_id, distance_m=s.distance_m, travel_s=s.travel_s)
                for s in c.corridor.stops
            ],
            length_m=c.corridor.length_m,
            two_way=c.corridor.two_way,
            before=_diagram_out(c.before),
            after=_diagram_out(c.after),
        )
        for c in found.corridors
    ]


@router.post("/plans/{plan_id}/review", name="traffic.plan.review")
def review_plan(
    session: SessionDep, actor: ActorDep, plan_id: uuid.UUID, body: PlanReviewIn
) -> PlanOut:
    """Approve or reject a draft (by someone other than its author)."""
    plan = plans.review_plan(
        session=session, actor=actor, plan_id=plan_id, approve=body.approve, note=body.note
    )
    return _plan_out(plan)


@router.post("/plans/{plan_id}/issue", name="traffic.plan.issue")
def issue_plan(
    session: SessionDep, actor: ActorDep, plan_id: uuid.UUID, body: PlanIssueIn
) -> list[ActiveOut]:
    """Make an approved plan the active plan of its signals, now."""
    plans.issue_plan(session=session, actor=actor, plan_id=plan_id, tls_ids=body.tls_ids)
    network_id = plans.get_plan(session=session, actor=actor, plan_id=plan_id).network_id
    return [
        _active_out(a)
        for a in plans.active_plans(session=session, actor=actor, network_id=network_id)
    ]


def _active_out(active: plans.Active) -> ActiveOut:
    return ActiveOut(
        tls_id=active.tls_id,
        plan_id=active.plan_id,
        plan_name=active.plan_name,
        effective_at=active.effective_at,
        issued_by=active.issued_by,
        seq=active.seq,
    )


@router.get("/networks/{network_id}/active", name="traffic.plan.active")
def active_plans(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> list[ActiveOut]:
    """What every signal runs now: a plan since its effective time, or the network's program."""
    found = {
        a.tls_id: a for a in plans.active_plans(session=session, actor=actor, network_id=network_id)
    }
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    ids = sorted(set(found) | set(networks.signal_ids(row)))
    return [
        _active_out(found[s])
        if s in found
        else ActiveOut(tls_id=s, plan_id=None, plan_name=None, effective_at=None, issued_by=None)
        for s in ids
    ]


@router.post("/networks/{network_id}/signals/{tls_id}/rollback", name="traffic.plan.rollback")
def roll_back(
    session: SessionDep,
    actor: ActorDep,
    network_id: uuid.UUID,
    tls_id: str,
    seq: Annotated[int | None, Query(ge=0)] = None,
) -> ActiveOut:
    """The signal returns to the plan it ran before (or the network's own program); with
    ``seq``, only if its latest change is still that one (a retry rolls back once)."""
    row = plans.roll_back(
        session=session, actor=actor, network_id=network_id, tls_id=tls_id, expected_seq=seq
    )
    name = (
        plans.get_plan(session=session, actor=actor, plan_id=row.plan_id).name
        if row.plan_id
        else None
    )
    return ActiveOut(
        tls_id=row.tls_id,
        plan_id=row.plan_id,
        plan_name=name,
        effective_at=row.effective_at,
        issued_by=row.issued_by,
        seq=row.seq,
    )


# --- counts ---------------------------------------------------------------------------------


class CountRowIn(BaseModel):
    interval_begin: str | float = Field(union_mode="left_to_right")
    interval_end: str | float = Field(union_mode="left_to_right")
    tls_id: str = Field(max_length=200)
    from_edge: str = Field(max_length=200)
    to_edge: str = Field(max_length=200)
    dir: str | None = Field(default=None, max_length=4)
    count: float


class CountsBatchIn(BaseModel):
    """A batch of counts: its rows, the day seconds count from (when times are seconds), and a
    key that makes a re-sent batch a replay."""

    rows: list[CountRowIn] = Field(min_length=1, max_length=countstore.MAX_JSON_ROWS)
    day: date | None = None
    key: str | None = Field(default=None, min_length=1, max_length=countstore.MAX_KEY)


class BatchOut(BaseModel):
    id: uuid.UUID
    network_id: uuid.UUID
    key: str
    source: str
    rows: int
    duplicates: int
    first_begin: datetime | None
    last_end: datetime | None
    days: list[str]
    created_by: str
    created_at: datetime


class IngestOut(BatchOut):
    #: The key was seen before with the same counts: nothing new was kept.
    replay: bool
    gaps: int


class ProfileOut(BaseModel):
    tls_id: str
    from_edge: str
    to_edge: str
    #: Seconds from local midnight to the slot's beginning (slots of 15 minutes).
    slot_s: int
    vehicles: int
    days: int
    flow_vph: float


def _ingested(result: countstore.Ingested) -> IngestOut:
    base = BatchOut.model_validate(result.batch, from_attributes=True)
    return IngestOut(**base.model_dump(), replay=result.replay, gaps=len(result.report.gaps))


@router.post("/networks/{network_id}/counts", name="traffic.counts.ingest", status_code=201)
@takes_bodies_up_to(BATCH_BODY_BYTES)
def ingest_counts(
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    network_id: uuid.UUID,
    body: CountsBatchIn,
) -> IngestOut:
    """Keep a batch of counts (validated whole; rows already kept are counted once)."""
    result = countstore.ingest(
        session=session,
        actor=actor,
        context=traffic_context(request),
        network_id=network_id,
        source="json",
        rows=[row.model_dump() for row in body.rows],
        key=body.key,
        day=body.day,
    )
    return _ingested(result)


async def _body(request: Request) -> bytes:
    """The request's body (read before the unit of work waits for its database slot)."""
    return await request.body()


BodyDep = Annotated[bytes, Depends(_body)]


@router.post("/networks/{network_id}/counts/csv", name="traffic.counts.ingest_csv", status_code=201)
@takes_bodies_up_to(plans.MAX_COUNTS_BYTES)
def ingest_counts_csv(
    request: Request,
    content: BodyDep,
    session: SessionDep,
    actor: ActorDep,
    network_id: uuid.UUID,
    day: Annotated[date | None, Query()] = None,
    key: Annotated[str | None, Query(min_length=1, max_length=countstore.MAX_KEY)] = None,
) -> IngestOut:
    """Keep a counts CSV sent as the request's body (``text/csv``)."""
    result = countstore.ingest(
        session=session,
        actor=actor,
        context=traffic_context(request),
        network_id=network_id,
        source="csv",
        content=content,
        key=key,
        day=day,
    )
    return _ingested(result)


@router.get("/networks/{network_id}/counts", name="traffic.counts.list")
def list_batches(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> list[BatchOut]:
    """The network's kept count batches, newest first (at most 200)."""
    rows = countstore.summary(session=session, actor=actor, network_id=network_id)
    return [BatchOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/networks/{network_id}/profile", name="traffic.counts.profile")
def counts_profile(
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    network_id: uuid.UUID,
    first_day: date,
    last_day: date,
) -> list[ProfileOut]:
    """The mean flow of each movement per 15 minutes of the day over the days given."""
    rows = countstore.stored_profile(
        session=session,
        actor=actor,
        context=traffic_context(request),
        network_id=network_id,
        first=first_day,
        last=last_day,
    )
    return [
        ProfileOut(
            tls_id=r.tls_id,
            from_edge=r.from_edge,
            to_edge=r.to_edge,
            slot_s=r.slot_s,
            vehicles=r.vehicles,
            days=r.days,
            flow_vph=round(r.flow_vph, 2),
        )
        for r in rows
    ]


@router.post("/tenants/{tenant_id}/networks", name="traffic.network.import", status_code=201)
@takes_bodies_up_to(networks.MAX_NETWORK_BYTES)
def import_network(
    content: BodyDep,
    session: SessionDep,
    actor: ActorDep,
    tenant_id: uuid.UUID,
    name: Annotated[str, Query(min_length=1, max_length=networks.MAX_NAME)],
    file_name: Annotated[str, Query(min_length=1, max_length=255)] = "network.net.xml",
) -> NetworkOut:
    """Import a SUMO network (the ``.net.xml`` file, gzipped or not, as the request's body)
    into a tenant, under a name unique in the tenant."""
    row = networks.import_network(
        session=session,
        actor=actor,
        tenant_id=tenant_id,
        name=name,
        content=content,
        source_name=file_name,
    )
    return _out(row)


# --- detector mapping ------------------------------------------------------------------------


class MappingOut(BaseModel):
    network_id: uuid.UUID
    version: int
    detectors: int
    rows: int
    sha256: str
    created_by: str
    created_at: datetime


def _mapping_out(row: TrafficDetectorMapping) -> MappingOut:
    return MappingOut.model_validate(row, from_attributes=True)


@router.put("/networks/{network_id}/detectors", name="traffic.detectors.put")
@takes_bodies_up_to(mappings.MAX_MAPPING_BYTES)
def put_detector_mapping(
    content: BodyDep, session: SessionDep, actor: ActorDep, network_id: uuid.UUID
) -> MappingOut:
    """Keep a new version of the network's detector-to-movement mapping (the CSV
    ``detector_id,tls_id,from_edge,to_edge,lane,share`` as the request's body), validated
    whole; the same file again answers the version it made."""
    row = mappings.put_mapping(session=session, actor=actor, network_id=network_id, content=content)
    return _mapping_out(row)


@router.get("/networks/{network_id}/detectors", name="traffic.detectors.get")
def get_detector_mapping(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> MappingOut:
    """The network's latest detector mapping (404 when it has none)."""
    return _mapping_out(
        mappings.current_mapping(session=session, actor=actor, network_id=network_id)
    )


@router.get("/networks/{network_id}/detectors/csv", name="traffic.detectors.csv")
def detector_mapping_csv(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> Response:
    """The network's latest detector mapping as it was uploaded."""
    row = mappings.current_mapping(session=session, actor=actor, network_id=network_id)
    return Response(
        row.content,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="detectors-v{row.version}.csv"'},
    )


@router.post(
    "/networks/{network_id}/counts/detectors",
    name="traffic.counts.ingest_detectors",
    status_code=201,
)
@takes_bodies_up_to(plans.MAX_COUNTS_BYTES)
def ingest_detector_counts(
    request: Request,
    content: BodyDep,
    session: SessionDep,
    actor: ActorDep,
    network_id: uuid.UUID,
    day: Annotated[date | None, Query()] = None,
    key: Annotated[str | None, Query(min_length=1, max_length=countstore.MAX_KEY)] = None,
) -> IngestOut:
    """Keep detector counts (``interval_begin,interval_end,detector_id,count`` as the
    request's body) as the movement counts the network's detector mapping makes of them."""
    result = mappings.ingest_detector_counts(
        session=session,
        actor=actor,
        context=traffic_context(request),
        network_id=network_id,
        content=content,
        key=key,
        day=day,
    )
    return _ingested(result)


# --- evaluations in SUMO --------------------------------------------------------------------


class EvaluationIn(BaseModel):
    """An evaluation of a stored plan: the number of demand samples (1..10) and, the first time
    a plan is evaluated, the counts it was drafted from (the CSV's text, or the days kept)."""

    seeds: int = 3
    counts_csv: str | None = Field(default=None, min_length=1, max_length=plans.MAX_COUNTS_BYTES)
    first_day: date | None = None
    last_day: date | None = None


class EvaluationRunOut(BaseModel):
    vehicles: int
    mean_travel_time_s: float
    mean_waiting_s: float
    mean_time_loss_s: float
    total_delay_vehh: float
    stops: int
    not_inserted: int


class EvaluationControlOut(BaseModel):
    #: ``network`` (the network's own programs), ``plan`` or ``actuated`` (SUMO's, a reference).
    name: str
    runs: list[EvaluationRunOut]
    #: Means over the runs; total delay also with its min..max.
    total_delay_vehh: float
    total_delay_min_vehh: float
    total_delay_max_vehh: float
    mean_travel_time_s: float
    mean_waiting_s: float
    mean_time_loss_s: float
    vehicles: float
    stops: float
    not_inserted: float


class EvaluationOut(BaseModel):
    id: uuid.UUID
    plan_id: uuid.UUID
    network_id: uuid.UUID
    seeds: int
    #: ``queued``, ``running``, ``done`` or ``failed``.
    status: str
    steps_done: int
    steps_total: int
    error: str | None
    error_code: str | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: Per control, once done: its runs and their means.
    controls: list[EvaluationControlOut]


def _evaluation_out(row: TrafficEvaluation) -> EvaluationOut:
    runs = {s.name: s.runs for s in evaluations.summaries(row)}
    return EvaluationOut(
        id=row.id,
        plan_id=row.plan_id,
        network_id=row.network_id,
        seeds=row.seeds,
        status=row.status,
        steps_done=row.steps_done,
        steps_total=row.steps_total,
        error=row.error,
        error_code=(row.error_detail or {}).get("code"),
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        controls=[
            EvaluationControlOut(
                name=f.name,
                runs=[EvaluationRunOut(**asdict(r)) for r in runs[f.name]],
                total_delay_vehh=f.total_delay_vehh,
                total_delay_min_vehh=f.total_delay_low,
                total_delay_max_vehh=f.total_delay_high,
                mean_travel_time_s=f.mean_travel_time_s,
                mean_waiting_s=f.mean_waiting_s,
                mean_time_loss_s=f.mean_time_loss_s,
                vehicles=f.vehicles,
                stops=f.stops,
                not_inserted=f.not_inserted,
            )
            for f in evaluations.figures(row)
        ],
    )


@router.post("/plans/{plan_id}/evaluations", name="traffic.evaluation.request", status_code=202)
@takes_bodies_up_to(DRAFT_BODY_BYTES)
def request_evaluation(
    request: Request, session: SessionDep, actor: ActorDep, plan_id: uuid.UUID, body: EvaluationIn
) -> EvaluationOut:
    """Queue an evaluation of the plan in SUMO: the network's programs, the plan and SUMO's
    actuated control under the plan's design hour; follow it with its ``GET``."""
    days = [d for d in (body.first_day, body.last_day) if d is not None]
    row = evaluations.request_evaluation(
        session=session,
        actor=actor,
        plan_id=plan_id,
        seeds=body.seeds,
        counts=body.counts_csv.encode() if body.counts_csv is not None else None,
        stored=(days[0], days[-1]) if days else None,
        context=traffic_context(request),
    )
    return _evaluation_out(row)


@router.get("/evaluations/{evaluation_id}", name="traffic.evaluation.get")
def get_evaluation(session: SessionDep, actor: ActorDep, evaluation_id: uuid.UUID) -> EvaluationOut:
    """An evaluation: its progress (steps done of the total), then its figures or its error."""
    return _evaluation_out(
        evaluations.get_evaluation(session=session, actor=actor, evaluation_id=evaluation_id)
    )


@router.get("/plans/{plan_id}/evaluations", name="traffic.evaluation.list")
def list_evaluations(
    session: SessionDep, actor: ActorDep, plan_id: uuid.UUID
) -> list[EvaluationOut]:
    """The plan's evaluations, newest first."""
    rows = evaluations.list_evaluations(session=session, actor=actor, plan_id=plan_id)
    return [_evaluation_out(row) for row in rows]
