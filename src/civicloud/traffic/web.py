"""Traffic's console pages: the networks one may see; a network's map drawn from the network
itself (an SVG of its roads and signals; no map tiles are fetched from anywhere), its plans and
what each signal runs; a plan's figures before and after, with its review, issue and rollback.

The forms are thin adapters over ``plans``: each post is one unit of work, a refusal re-renders
the page with the service's message (and rolls back), a success redirects (303)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.dates import parse_date
from civicloud.core.errors import CivicloudError
from civicloud.core.i18n import N_
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import (
    evaluations,
    export,
    mappings,
    networks,
    plans,
    timeofday,
    timespace,
)
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.models import TrafficPlan
from civicloud.traffic.optimize import OFFSET_OBJECTIVES, Limits
from civicloud.web.bodies import BodyLimitRoute, takes_bodies_up_to
from civicloud.web.deps import SessionDep, services_of
from civicloud.web.pages.forms import Upload, rejected_form, service_error, uploaded
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import get_renderer, page_language, render

router = APIRouter(include_in_schema=False, route_class=BodyLimitRoute)
#: A form's body: its file and a little more for the fields and the multipart framing.
FORM_SLACK_BYTES = 1 << 20

#: The map's drawing box (the SVG's viewBox is scaled to it, keeping the network's aspect).
MAP_SIZE = 1000.0


@router.get("/console/traffic", name="traffic.page.networks")
def networks_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The road networks of the tenants one may see, and an import form for those who may."""
    return _networks_page(request, session, actor)


def _networks_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    rows = networks.visible_networks(session=session, actor=actor)
    language = page_language(request)
    choices = [
        (str(t.id), t.name_zh if language == "zh" else t.name_en)
        for t in networks.importing_tenants(session=session, actor=actor)
    ]
    return render(
        request,
        "traffic/networks.html",
        {
            "section": "traffic",
            "rows": rows,
            "tenant_choices": choices,
            "form": form
            or rejected_form({"tenant_id": choices[0][0] if choices else "", "name": ""}, {}),
        },
        status_code=status,
    )


#: A plan's review status, as people read it.
STATUS_LABELS = {
    "draft": N_("Awaiting review"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
}
#: What the redirect after a successful form says (``?done=``).
DONE = {
    "drafted": N_("The plan was drafted. Another engineer reviews it before it is issued."),
    "approved": N_("The plan was approved. It can be issued now."),
    "rejected": N_("The plan was rejected."),
    "issued": N_("The plan was issued: its signals run it from now on."),
    "rolled_back": N_("The signal went back to the plan it ran before."),
    "imported": N_("The network was imported. Draft a plan for it from its counts."),
    "mapped": N_("The detector mapping was kept as the network's current one."),
}


CountsFileDep = Annotated[Upload, Depends(uploaded("counts"))]
NetworkFileDep = Annotated[Upload, Depends(uploaded("network"))]


@router.post("/console/traffic/networks", name="traffic.page.network_import")
@takes_bodies_up_to(networks.MAX_NETWORK_BYTES + FORM_SLACK_BYTES)
def import_network(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    upload: NetworkFileDep,
    tenant_id: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Import a SUMO network file into one of the tenants one may import into."""
    values = {"tenant_id": tenant_id, "name": name}
    errors: dict[str, str] = {}
    content, file_name = upload.content, upload.name
    if not content:
        errors["network"] = N_("Choose a SUMO network file (.net.xml or .net.xml.gz).")
    try:
        chosen = uuid.UUID(tenant_id)
    except ValueError:
        errors["tenant_id"] = N_("Choose a tenant.")
    else:
        try:  # a tenant one may not import into is refused as such, whatever else is missing
            networks.require_importer(session=session, actor=actor, tenant_id=chosen)
        except CivicloudError as exc:
            form = rejected_form(values, errors, service_error(exc))
            page = _networks_page(request, session, actor, form=form, status=_refused(exc))
            raise FormRejected(page) from exc
    if not name.strip():
        errors["name"] = N_("Enter a name for the network.")
    summary = None
    if not errors:
        try:
            row = networks.import_network(
                session=session,
                actor=actor,
                tenant_id=chosen,
                name=name,
                content=content,
                source_name=file_name or "network.net.xml",
            )
        except CivicloudError as exc:
            summary = service_error(exc)
            form = rejected_form(values, errors, summary)
            page = _networks_page(request, session, actor, form=form, status=_refused(exc))
            raise FormRejected(page) from exc
        return see_other(f"/console/traffic/networks/{row.id}?done=imported")
    page = _networks_page(request, session, actor, form=rejected_form(values, errors), status=422)
    raise FormRejected(page)


def _may(session: Session, actor: Actor, permission: str, tenant_id: uuid.UUID) -> bool:
    tenant = session.get(Tenant, tenant_id)
    return tenant is not None and actor.can(permission, tenant.path)


@router.get("/console/traffic/networks/{network_id}", name="traffic.page.network")
def network_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    network_id: uuid.UUID,
    done: str = "",
) -> HTMLResponse:
    """A network's map, its signals with what they run, and its plans."""
    return _network_page(request, session, actor, network_id, done=done)


def _network_page(
    request: Request,
    session: Session,
    actor: Actor,
    network_id: uuid.UUID,
    *,
    done: str = "",
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    network = networks.load(row)
    xmin, ymin, xmax, ymax = network.bounds
    scale = MAP_SIZE / max(xmax - xmin, ymax - ymin, 1.0)

    def point(x: float, y: float) -> tuple[float, float]:
        # SVG's y grows downwards; the network's northwards.
        return round((x - xmin) * scale, 1), round((ymax - y) * scale, 1)

    lines = [
        " ".join(f"{px},{py}" for px, py in (point(x, y) for x, y in edge.shape))
        for edge in network.edges.values()
        if len(edge.shape) >= 2
    ]
    signals = [
        {
            "id": s.id,
            "xy": point(s.x, s.y),
            "cycle": s.program.cycle,
            "phases": len(s.program.phases),
            "program": s.program_id,
            "links": s.size,
        }
        for s in network.signals.values()
    ]
    width = round((xmax - xmin) * scale, 1) or MAP_SIZE
    height = round((ymax - ymin) * scale, 1) or MAP_SIZE
    active = {
        a.tls_id: a for a in plans.active_plans(session=session, actor=actor, network_id=row.id)
    }
    return render(
        request,
        "traffic/network.html",
        {
            "section": "traffic",
            "row": row,
            "lines": lines,
            "signals": signals,
            "view_box": f"-20 -20 {width + 40} {height + 40}",
            "active": active,
            "plans": plans.list_plans(session=session, actor=actor, network_id=row.id),
            "status_labels": STATUS_LABELS,
            "may_draft": _may(session, actor, "traffic.network.admin", row.tenant_id),
            "may_approve": _may(session, actor, "traffic.plan.approve", row.tenant_id),
            "mapping": mappings.find_mapping(session=session, actor=actor, network_id=row.id),
            "done": DONE.get(done),
            "form": form
            or rejected_form(
                {
                    "name": "",
                    "min_cycle": "60",
                    "max_cycle": "150",
                    "periods": "1",
                    "offsets": "delay",
                },
                {},
            ),
        },
        status_code=status,
    )


MappingFileDep = Annotated[Upload, Depends(uploaded("mapping"))]


@router.post("/console/traffic/networks/{network_id}/detectors", name="traffic.page.detectors_put")
@takes_bodies_up_to(mappings.MAX_MAPPING_BYTES + FORM_SLACK_BYTES)
def put_detector_mapping(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    network_id: uuid.UUID,
    upload: MappingFileDep,
) -> Response:
    """Keep a new version of the network's detector mapping from an uploaded CSV file."""
    errors: dict[str, str] = {}
    if not upload.content:
        errors["mapping"] = N_("Choose a detector mapping file (CSV).")
    summary = None
    if not errors:
        try:
            mappings.put_mapping(
                session=session, actor=actor, network_id=network_id, content=upload.content
            )
        except CivicloudError as exc:
            summary = service_error(exc)
            form = rejected_form({}, errors, summary)
            page = _network_page(
                request, session, actor, network_id, form=form, status=_refused(exc)
            )
            raise FormRejected(page) from exc
        return see_other(f"/console/traffic/networks/{network_id}?done=mapped")
    page = _network_page(
        request, session, actor, network_id, form=rejected_form({}, errors), status=422
    )
    raise FormRejected(page)


@router.get(
    "/console/traffic/networks/{network_id}/detectors.csv", name="traffic.page.detectors_csv"
)
def detector_mapping_csv(
    session: SessionDep, actor: ConsoleActorDep, network_id: uuid.UUID
) -> Response:
    """The network's current detector mapping, as it was uploaded."""
    row = mappings.current_mapping(session=session, actor=actor, network_id=network_id)
    return Response(
        row.content,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="detectors-v{row.version}.csv"'},
    )


def _whole(text: str) -> bool:
    """A form's whole number in ASCII digits (``str.isdigit`` takes ``²`` too, ``int`` not)."""
    return text.isascii() and text.isdigit()


def _refused(exc: CivicloudError) -> int:
    return exc.status if exc.status in (403, 404, 409) else 422


@router.post("/console/traffic/networks/{network_id}/plans", name="traffic.page.plan_draft")
@takes_bodies_up_to(plans.MAX_COUNTS_BYTES + FORM_SLACK_BYTES)
def draft_plan(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    network_id: uuid.UUID,
    upload: CountsFileDep,
    name: Annotated[str, Form(max_length=200)] = "",
    min_cycle: Annotated[str, Form(max_length=10)] = "60",
    max_cycle: Annotated[str, Form(max_length=10)] = "150",
    periods: Annotated[str, Form(max_length=10)] = "1",
    offsets: Annotated[str, Form(max_length=10)] = "delay",
) -> Response:
    """Draft a plan for the network from an uploaded counts file: one for the busiest hour,
    or a time-of-day plan of at most ``periods`` periods."""
    counts = upload.content
    values = {
        "name": name,
        "min_cycle": min_cycle,
        "max_cycle": max_cycle,
        "periods": periods,
        "offsets": offsets,
    }
    errors: dict[str, str] = {}
    if not counts:
        errors["counts"] = N_("Choose a counts file (CSV).")
    if not _whole(periods) or not 1 <= int(periods) <= timeofday.MAX_PERIODS:
        errors["periods"] = N_("Choose how many plans the day has.")
    if offsets not in OFFSET_OBJECTIVES:
        errors["offsets"] = N_("Choose what the offsets are set for.")
    cycles: list[float] = []
    for key in ("min_cycle", "max_cycle"):
        try:
            cycles.append(float(values[key]))
        except ValueError:
            errors[key] = N_("Enter a cycle in seconds, such as 90.")
    summary = None
    if not errors:
        try:
            plan = plans.draft_plan(
                session=session,
                actor=actor,
                network_id=network_id,
                name=name,
                counts=counts,
                limits=Limits(min_cycle=cycles[0], max_cycle=cycles[1], offsets=offsets),
                periods=int(periods),
            )
        except CivicloudError as exc:
            summary = service_error(exc)
            form = rejected_form(values, errors, summary)
            page = _network_page(
                request, session, actor, network_id, form=form, status=_refused(exc)
            )
            raise FormRejected(page) from exc
        return see_other(f"/console/traffic/plans/{plan.id}?done=drafted")
    page = _network_page(
        request, session, actor, network_id, form=rejected_form(values, errors, summary), status=422
    )
    raise FormRejected(page)


@router.get("/console/traffic/plans/{plan_id}", name="traffic.page.plan")
def plan_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    plan_id: uuid.UUID,
    done: str = "",
    corridor: Annotated[str, Query(max_length=4)] = "",
) -> HTMLResponse:
    """A plan: its figures per signal before and after, a time-space diagram of a corridor,
    and its review and issue."""
    chosen = int(corridor) if _whole(corridor) else 0  # an unknown one shows the longest
    return _plan_page(request, session, actor, plan_id, done=done, corridor=chosen)


#: The bar chart's scale: the longest bar is this wide (SVG units).
CHART_WIDTH = 600.0


def _plan_page(
    request: Request,
    session: Session,
    actor: Actor,
    plan_id: uuid.UUID,
    *,
    done: str = "",
    error: dict[str, Any] | None = None,
    status: int = 200,
    corridor: int = 0,
) -> HTMLResponse:
    plan: TrafficPlan = plans.get_plan(session=session, actor=actor, plan_id=plan_id)
    found = timespace.plan_corridors(session=session, actor=actor, plan_id=plan_id, chosen=corridor)
    row = networks.get_network(session=session, actor=actor, network_id=plan.network_id)
    figures = [dict(signal=s, **f) for s, f in sorted(plan.figures.items())]
    longest = max([f["before_delay_s"] for f in figures] + [f["delay_s"] for f in figures] + [1.0])
    for f in figures:
        f["before_bar"] = round(f["before_delay_s"] / longest * CHART_WIDTH, 1)
        f["after_bar"] = round(f["delay_s"] / longest * CHART_WIDTH, 1)
    approver = _may(session, actor, "traffic.plan.approve", plan.tenant_id)
    design = export.design_sheet(plan.sheet)
    own = actor.user_id is not None and actor.user_id == plan.created_by_user
    return render(
        request,
        "traffic/plan.html",
        {
            "section": "traffic",
            "plan": plan,
            "row": row,
            "figures": figures,
            "status_label": STATUS_LABELS[plan.status],
            "may_review": approver and plan.status == "draft" and not own,
            "own_draft": own and plan.status == "draft",
            "may_issue": approver and plan.status == "approved",
            "done": DONE.get(done),
            "form": rejected_form({}, {}, error),
            "periods": _periods(plan.sheet),
            "design_period": design.get("name"),
            "corridors": found.corridors,
            "chosen": found.chosen,
            "drawings": _drawings(found),
            "evaluations": evaluations.list_evaluations(
                session=session, actor=actor, plan_id=plan.id
            ),
            "may_evaluate": evaluations.may_request(session=session, actor=actor, plan=plan),
            "evaluation_labels": EVALUATION_LABELS,
        },
        status_code=status,
    )


def _periods(sheet: dict[str, Any]) -> list[dict[str, Any]]:
    """A time-of-day plan's periods with each one's flow-weighted mean delay before and after
    (none for a plan of one period)."""
    found = []
    for each in sheet.get("periods", []):
        figures = list(each.get("figures", {}).values())
        flow = sum(f["flow_vph"] for f in figures)

        def mean(key: str, figures: list[dict[str, Any]] = figures, flow: float = flow) -> float:
            if flow <= 0:
                return 0.0
            return float(sum(f[key] * f["flow_vph"] for f in figures)) / flow

        found.append(
            {
                "name": each["name"],
                "start": each["start"],
                "end": each["end"],
                "program_id": each["program_id"],
                "flow_vph": flow,
                "before_delay_s": mean("before_delay_s"),
                "delay_s": mean("delay_s"),
                "design": each["name"] == sheet.get("design_period"),
            }
        )
    return found


#: The time-space diagram's drawing box: a margin for the signals' names, then the time axis.
TS_LEFT = 120.0
TS_WIDTH = 700.0
TS_TOP = 16.0
TS_HEIGHT = 260.0
#: How far a direction's green bar sits from its signal's line (forward below, backward above).
TS_BAR = 5.0


def _drawings(found: timespace.PlanCorridors) -> list[dict[str, Any]]:
    """The chosen corridor's diagrams (the network's programs, then the plan) in SVG units."""
    if found.chosen is None:
        return []
    chosen = found.corridors[found.chosen]
    return [
        _drawing(chosen.before, "before", found.chosen),
        _drawing(chosen.after, "after", found.chosen),
    ]


def _drawing(d: timespace.Diagram, which: str, index: int) -> dict[str, Any]:
    length = max(d.corridor.length_m, 1.0)
    horizon = max(d.horizon_s, 1)

    def x(t: float) -> float:
        return round(TS_LEFT + t / horizon * TS_WIDTH, 1)

    def y(metres: float) -> float:
        return round(TS_TOP + TS_HEIGHT - metres / length * TS_HEIGHT, 1)

    ys = [y(s.distance_m) for s in d.corridor.stops]
    stops = [{"id": s.signal_id, "y": at} for s, at in zip(d.corridor.stops, ys, strict=True)]
    bars: list[dict[str, Any]] = []
    bands: list[str] = []
    reds: list[float] = []
    for direction, shift in ((d.forward, TS_BAR), (d.backward, -TS_BAR)):
        if direction is None:
            continue
        reds += [at + shift for at in ys]
        for k, greens in enumerate(direction.greens):
            for lo, hi in greens:
                bars.append({"x": x(lo), "w": round(x(hi) - x(lo), 1), "y": ys[k] + shift})
        band = direction.band
        if band is None or band.width_s <= 0 or d.cycle_s is None:
            continue
        # The band leaves the direction's first signal and reaches each later one after its
        # travel time; it repeats every cycle (drawn over the horizon, clipped to it).
        order = list(range(len(ys))) if shift > 0 else list(range(len(ys) - 1, -1, -1))
        reach = direction.arrival_s[order[-1]]
        cycle = d.cycle_s
        repeat = -math.ceil(reach / cycle) - 1
        while band.start_s + repeat * cycle < horizon:
            t0 = band.start_s + repeat * cycle
            # Its earliest vehicle's path through every signal, then its last one's back.
            early = [(x(t0 + direction.arrival_s[k]), ys[k]) for k in order]
            late = [(x(t0 + band.width_s + direction.arrival_s[k]), ys[k]) for k in order]
            bands.append(" ".join(f"{px},{py}" for px, py in early + late[::-1]))
            repeat += 1
    step = 30 if horizon <= 300 else 60 if horizon <= 600 else 120
    ticks = [{"x": x(t), "t": t} for t in range(0, horizon + 1, step)]
    return {
        "which": which,
        "id": f"ts-{which}-{index}",
        "stops": stops,
        "bars": bars,
        "reds": reds,
        "bands": bands,
        "ticks": ticks,
        "right": TS_LEFT + TS_WIDTH,
        "bottom": TS_TOP + TS_HEIGHT,
        "height": TS_TOP + TS_HEIGHT + 30,
        "cycle_s": d.cycle_s,
        "forward": d.forward.band,
        "backward": d.backward.band if d.backward else None,
    }


@router.post("/console/traffic/plans/{plan_id}/review", name="traffic.page.plan_review")
def review_plan(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    plan_id: uuid.UUID,
    decision: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=plans.MAX_NOTE)] = "",
) -> Response:
    """Approve or reject a draft."""
    if decision not in ("approve", "reject"):
        return see_other(f"/console/traffic/plans/{plan_id}")
    try:
        plans.review_plan(
            session=session, actor=actor, plan_id=plan_id, approve=decision == "approve", note=note
        )
    except CivicloudError as exc:
        page = _plan_page(
            request, session, actor, plan_id, error=service_error(exc), status=_refused(exc)
        )
        raise FormRejected(page) from exc
    done = "approved" if decision == "approve" else "rejected"
    return see_other(f"/console/traffic/plans/{plan_id}?done={done}")


@router.post("/console/traffic/plans/{plan_id}/issue", name="traffic.page.plan_issue")
def issue_plan(
    request: Request, session: SessionDep, actor: ConsoleActorDep, plan_id: uuid.UUID
) -> Response:
    """Issue an approved plan to all its signals."""
    try:
        plans.issue_plan(session=session, actor=actor, plan_id=plan_id)
        network_id = plans.get_plan(session=session, actor=actor, plan_id=plan_id).network_id
    except CivicloudError as exc:
        page = _plan_page(
            request, session, actor, plan_id, error=service_error(exc), status=_refused(exc)
        )
        raise FormRejected(page) from exc
    return see_other(f"/console/traffic/networks/{network_id}?done=issued")


@router.post(
    "/console/traffic/networks/{network_id}/signals/{tls_id}/rollback",
    name="traffic.page.rollback",
)
def roll_back(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    network_id: uuid.UUID,
    tls_id: str,
    seq: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Return a signal to the plan it ran before (once, however often the form is sent)."""
    try:
        plans.roll_back(
            session=session,
            actor=actor,
            network_id=network_id,
            tls_id=tls_id,
            expected_seq=int(seq) if _whole(seq) else 0,
        )
    except CivicloudError as exc:
        form = rejected_form({}, {}, service_error(exc))
        page = _network_page(request, session, actor, network_id, form=form, status=_refused(exc))
        raise FormRejected(page) from exc
    return see_other(f"/console/traffic/networks/{network_id}?done=rolled_back")


# --- evaluations in SUMO ------------------------------------------------------------------------

#: An evaluation's status, as people read it.
EVALUATION_LABELS = {
    "queued": N_("Waiting to run"),
    "running": N_("Running"),
    "done": N_("Evaluated"),
    "failed": N_("Failed"),
}
#: The controls, as the charts and the table name them.
CONTROL_LABELS = {
    "network": N_("The network's own program"),
    "plan": N_("This plan"),
    "actuated": N_("SUMO's actuated control (reference)"),
}
#: While an evaluation waits or runs, its page is shown again this often (seconds).
REFRESH_SECONDS = 5


def _decimal(language: str, digits: int) -> Callable[[Any], str]:
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    locale = "zh_Hans_CN" if language == "zh" else "en"

    def text(value: Any) -> str:
        return format_decimal(float(value), format=pattern, locale=locale)

    return text


class _Spread(float):
    """A mean that carries its min..max over the seeds, for the total delay chart."""

    low: float
    high: float

    def __new__(cls, mean: float, low: float, high: float) -> _Spread:
        made = super().__new__(cls, mean)
        made.low, made.high = low, high
        return made


def _charts(
    language: str, found: list[evaluations.Figures], translate: Callable[[str], str]
) -> dict[str, Any]:
    """What the evaluation page draws and lists, in the page's language."""
    one, none = _decimal(language, 1), _decimal(language, 0)

    def spread(value: Any) -> str:
        if isinstance(value, _Spread):
            return f"{one(value)} ({one(value.low)}..{one(value.high)})"
        return one(value)

    def label(name: str) -> str:
        return translate(CONTROL_LABELS.get(name, name)) if name in CONTROL_LABELS else name

    charts: list[tuple[str, str, Callable[[Any], str], list[tuple[str, float]]]] = [
        (
            "delay",
            N_("Total delay (vehicle-hours, min..max over the seeds)"),
            spread,
            [(label(f.name), _Spread(f.total_delay_vehh, f.total_delay_low, f.total_delay_high))
             for f in found],
        ),
        ("travel", N_("Mean travel time (s)"), one,
         [(label(f.name), f.mean_travel_time_s) for f in found]),
        ("waiting", N_("Mean waiting time (s)"), one,
         [(label(f.name), f.mean_waiting_s) for f in found]),
        ("loss", N_("Mean time loss (s)"), one,
         [(label(f.name), f.mean_time_loss_s) for f in found]),
        ("stops", N_("Stops"), none, [(label(f.name), f.stops) for f in found]),
        ("through", N_("Vehicles through"), none, [(label(f.name), f.vehicles) for f in found]),
        ("waiting_to_enter", N_("Vehicles not inserted"), none,
         [(label(f.name), f.not_inserted) for f in found]),
    ]  # fmt: skip
    rows = [
        {
            "name": label(f.name),
            "delay": spread(_Spread(f.total_delay_vehh, f.total_delay_low, f.total_delay_high)),
            "travel": one(f.mean_travel_time_s),
            "waiting": one(f.mean_waiting_s),
            "loss": one(f.mean_time_loss_s),
            "through": none(f.vehicles),
            "stops": none(f.stops),
            "not_inserted": none(f.not_inserted),
        }
        for f in found
    ]
    return {
        # A figure that is zero for every control (no vehicle left waiting to enter) is not
        # drawn: the table shows it.
        "charts": [
            {"key": key, "title": title, "value": value, "items": items}
            for key, title, value, items in charts
            if any(float(v) for _, v in items)
        ],
        "rows": rows,
    }


@router.post("/console/traffic/plans/{plan_id}/evaluations", name="traffic.page.evaluation_request")
@takes_bodies_up_to(plans.MAX_COUNTS_BYTES + FORM_SLACK_BYTES)
def request_evaluation(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    plan_id: uuid.UUID,
    upload: CountsFileDep,
    seeds: Annotated[str, Form(max_length=10)] = "3",
    first_day: Annotated[str, Form(max_length=20)] = "",
    last_day: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Queue an evaluation of the plan in SUMO, under the counts it was drafted from: the
    file, or the days of kept counts."""
    counts = upload.content
    try:
        count = int(seeds.strip())
    except ValueError:
        count = 0  # refused by the service with its own message
    try:
        days = (
            (parse_date(first_day), parse_date(last_day or first_day))
            if first_day.strip()
            else None
        )
        row = evaluations.request_evaluation(
            session=session,
            actor=actor,
            plan_id=plan_id,
            seeds=count,
            counts=counts or None,
            stored=days,
            context=services_of(request).context("traffic", TrafficContext) if days else None,
        )
    except CivicloudError as exc:
        page = _plan_page(
            request, session, actor, plan_id, error=service_error(exc), status=_refused(exc)
        )
        raise FormRejected(page) from exc
    return see_other(f"/console/traffic/evaluations/{row.id}")


@router.get("/console/traffic/evaluations/{evaluation_id}", name="traffic.page.evaluation")
def evaluation_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, evaluation_id: uuid.UUID
) -> HTMLResponse:
    """An evaluation in SUMO: its progress while it runs, then its figures before and after."""
    row = evaluations.get_evaluation(session=session, actor=actor, evaluation_id=evaluation_id)
    plan = plans.get_plan(session=session, actor=actor, plan_id=row.plan_id)
    network = networks.get_network(session=session, actor=actor, network_id=row.network_id)
    language = page_language(request)
    renderer = get_renderer(request)

    def translate(message: str) -> str:
        return renderer.gettext(language, message)

    detail = row.error_detail or {}
    response = render(
        request,
        "traffic/evaluation.html",
        {
            "section": "traffic",
            "evaluation": row,
            "plan": plan,
            "row": network,
            "status_label": EVALUATION_LABELS[row.status],
            "percent": round(100 * row.steps_done / max(row.steps_total, 1)),
            "failure": {
                "template": detail.get("template") or row.error or "",
                "params": detail.get("params") or {},
            },
            **_charts(language, evaluations.figures(row), translate),
        },
    )
    if row.status in ("queued", "running"):
        # Shown again until it ends: how far it got, then its figures (no script needed).
        response.headers["Refresh"] = str(REFRESH_SECONDS)
    return response
