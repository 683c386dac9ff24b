"""Stored signal plans: drafted from counts, reviewed, issued to signals, rolled back.

The life of a plan:

- **drafted** (``traffic.network.admin``): a stored network and a counts file in; every
  signal's plan (neighbours coordinated) out, kept with its SUMO additional file, its timing
  sheet and the expected figures before and after, per signal;
- **reviewed** once (``traffic.plan.approve``): approved or rejected, with a note. The engineer
  who drafted a plan does not approve it (a second pair of eyes, as bureaus require);
- **issued** (``traffic.plan.approve``): an approved plan becomes the active plan of its
  signals (all, or the ones named), effective at once;
- **rolled back** (``traffic.plan.approve``): a signal returns to the plan it ran before (or
  to the network's own program), in one action.

Which plan a signal runs is an append-only log (``traffic_plan_issue``): the latest row of a
signal is its active plan. Two changes of one signal at once collide on the log's unique key and
the loser's unit of work becomes one Conflict. Every step is audited.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core import audit, tenants
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import utcnow
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import countstore, export, networks, timeofday
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import (
    Count,
    design_demand,
    read_counts,
    require_clean,
    zone_offset_s,
)
from civicloud.traffic.errors import (
    OwnPlanReview,
    PlanNotFound,
    PlanStateConflict,
    TrafficInvalidInput,
)
from civicloud.traffic.models import TrafficNetwork, TrafficPlan, TrafficPlanIssue
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits, SignalPlan, evaluate_program
from civicloud.traffic.service import flag_spillback, optimize, plan_network
from civicloud.traffic.spillback import Saturated, saturated_intervals

MAX_NAME = 120
MAX_NOTE = 500
#: The largest counts file a draft reads (a month of 15-minute counts of a district).
MAX_COUNTS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Active:
    """What a signal runs: a plan (None: the network's own program) since a time."""

    tls_id: str
    plan_id: uuid.UUID | None
    plan_name: str | None
    effective_at: datetime | None
    issued_by: str | None
    #: Whether a rollback has somewhere to go (the signal runs one of the stored plans).
    can_roll_back: bool
    #: The signal's latest change (0: none): a rollback names it, so that a form sent twice
    #: rolls back once.
    seq: int = 0


def _figures(planned: Sequence[SignalPlan], before: Sequence[SignalPlan]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for plan, old in zip(planned, before, strict=True):
        figures[plan.signal_id] = {
            "cycle_s": plan.cycle,
            "offset_s": plan.offset,
            "greens_s": list(plan.splits),
            "delay_s": round(plan.delay_s, 2),
            "los": plan.los,
            "before_cycle_s": old.cycle,
            "before_delay_s": round(old.delay_s, 2),
            "before_los": old.los,
            "flow_vph": round(plan.flow_vph, 1),
            "flags": list(plan.flags),
        }
    return figures


def _name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > MAX_NAME or not clean.isprintable():
        raise TrafficInvalidInput(
            "A plan's name has 1 to %(limit)s printable characters.", params={"limit": MAX_NAME}
        )
    return clean


def draft_plan(
    *,
    session: Session,
    actor: Actor,
    network_id: uuid.UUID,
    name: str,
    limits: Limits,
    counts: bytes | None = None,
    stored: tuple[date, date] | None = None,
    context: TrafficContext | None = None,
    periods: int = 1,
) -> TrafficPlan:
    """A new draft plan for every signal of the network, from the busiest hour of a counts
    file (``counts``) or of the counts kept for the days ``stored`` (first, last).

    With ``periods`` above 1, a time-of-day plan: the day cut into at most that many periods
    of similar demand, a program each and a daily switch schedule (``timeofday``); the plan's
    figures are those of its busiest period, each period's are in its sheet."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    tenant = session.get_one(Tenant, row.tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    clean = _name(name)
    timeofday.check_settings(periods, timeofday.MIN_PERIOD_S)
    if (counts is None) == (stored is None) or (stored is not None and context is None):
        raise TrafficInvalidInput("Give either a counts file or the days of kept counts.")
    if counts is not None and len(counts) > MAX_COUNTS_BYTES:
        raise TrafficInvalidInput(
            "The counts file is larger than %(limit)s MiB.",
            params={"limit": MAX_COUNTS_BYTES >> 20},
        )
    if session.scalar(
        select(TrafficPlan.id).where(TrafficPlan.network_id == row.id, TrafficPlan.name == clean)
    ):
        raise PlanStateConflict(
            "The network already has a plan named %(name)s.", params={"name": clean}
        )
    network = networks.load(row)
    if counts is not None:
        drafted = _from_counts(network, counts, limits, periods)
    elif stored is not None and context is not None:
        drafted = _from_kept(session, actor, context, row, network, stored, limits, periods)
    else:  # refused above
        raise TrafficInvalidInput("Give either a counts file or the days of kept counts.")
    plan = TrafficPlan(
        tenant_id=row.tenant_id,
        network_id=row.id,
        name=clean,
        status="draft",
        limits=asdict(limits),
        counts_sha256=drafted.source,
        additional=drafted.additional.encode(),
        sheet=drafted.sheet,
        figures=_figures(drafted.plans, drafted.before),
        created_by=actor.name,
        created_by_user=actor.user_id,
    )
    session.add(plan)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="traffic.plan.draft",
        target=f"traffic_plan:{plan.id}",
        tenant_id=row.tenant_id,
        detail={"network_id": str(row.id), "name": clean, "signals": len(plan.figures)},
    )
    return plan


@dataclass(frozen=True)
class _Drafted:
    """What a draft keeps: the plans of its busiest hour (or period) with the network's
    programs under the same demand, the SUMO file and the sheet, and its source's digest."""

    plans: Sequence[SignalPlan]
    before: Sequence[SignalPlan]
    additional: str
    sheet: dict[str, Any]
    source: str


def _one_period(plans: Sequence[SignalPlan], before: Sequence[SignalPlan], source: str) -> _Drafted:
    return _Drafted(
        plans, before, export.sumo_additional(plans), json.loads(export.timing_json(plans)), source
    )


def _by_period(
    network: Network, by_period: Sequence[timeofday.PeriodPlan], source: str
) -> _Drafted:
    design = _busiest(by_period)
    sheet = export.periods_sheet(by_period)
    sheet["design_period"] = design.period.name
    for each, period_sheet in zip(by_period, sheet["periods"], strict=True):
        period_sheet["figures"] = _figures(each.plans, each.before)
    return _Drafted(
        design.plans,
        design.before,
        export.sumo_periods(list(network.signals), by_period),
        sheet,
        source,
    )


def _from_counts(network: Network, counts: bytes, limits: Limits, periods: int) -> _Drafted:
    source = hashlib.sha256(counts).hexdigest()
    if periods == 1:
        result = optimize(network, read_counts(counts, network), limits)
        return _one_period(result.plans, result.before, source)
    # Time of day: ISO times are read in the zone they were written in.
    report = require_clean(read_counts(counts, network))
    zone = zone_offset_s(counts) if report.absolute_times else 0.0
    planned = timeofday.plan_time_of_day(
        network, report, limits, max_periods=periods, zone_offset_s=zone
    )
    saturated = saturated_intervals(network, report.accepted, design_demand(report.accepted))
    return _by_period(network, _flagged(planned.periods, saturated, zone), source)


def _from_kept(
    session: Session,
    actor: Actor,
    context: TrafficContext,
    row: TrafficNetwork,
    network: Network,
    stored: tuple[date, date],
    limits: Limits,
    periods: int,
) -> _Drafted:
    first, last = stored
    profile = countstore.stored_profile(
        session=session, actor=actor, context=context, network_id=row.id, first=first, last=last
    )
    if not profile:
        raise TrafficInvalidInput(
            "No counts are kept for this network from %(first)s to %(last)s.",
            params={"first": first.isoformat(), "last": last.isoformat()},
        )
    source = kept_source(first, last)
    demand = countstore.design_demand(profile)
    # Each slot's mean over the days, as counts: the slots counted at capacity.
    slots = [
        Count(r.slot_s, r.slot_s + countstore.SLOT_S, r.tls_id, r.from_edge, r.to_edge,
              r.vehicles / max(r.days, 1))
        for r in profile
    ]  # fmt: skip
    saturated = saturated_intervals(network, slots, demand)
    if periods > 1:
        kept = timeofday.plan_kept(network, profile, limits, max_periods=periods)
        return _by_period(network, _flagged(kept, saturated), source)
    planned = flag_spillback(plan_network(network, demand, limits), saturated)
    before = flag_spillback(
        [
            evaluate_program(signal, demand.get(signal_id, {}))
            for signal_id, signal in network.signals.items()
        ],
        saturated,
    )
    return _one_period(planned, before, source)


def kept_source(first: date, last: date) -> str:
    """What a plan drafted from the days kept from ``first`` to ``last`` keeps as its counts'
    digest (the days, since the kept counts may grow)."""
    return hashlib.sha256(f"kept:{first.isoformat()}..{last.isoformat()}".encode()).hexdigest()


def _busiest(by_period: Sequence[timeofday.PeriodPlan]) -> timeofday.PeriodPlan:
    """The period whose design hour carries the most vehicles (the first of equals)."""
    return max(
        by_period,
        key=lambda p: sum(sum(flows.values()) for flows in p.demand.values()),
    )


def _flagged(
    by_period: Sequence[timeofday.PeriodPlan], saturated: Sequence[Saturated], zone_s: float = 0.0
) -> tuple[timeofday.PeriodPlan, ...]:
    """Each period's plans flagged where a movement was counted at capacity in that period."""
    found = []
    for each in by_period:
        inside = [s for s in saturated if (s.begin + zone_s) % timeofday.DAY_S in each.period]
        found.append(
            replace(
                each,
                plans=tuple(flag_spillback(each.plans, inside)),
                before=tuple(flag_spillback(each.before, inside)),
            )
        )
    return tuple(found)


def design_additional(plan: TrafficPlan) -> bytes:
    """The plan's SUMO file for its design hour: its own file, or, for a time-of-day plan,
    the programs of its busiest period alone (its switch schedule would run midnight's
    period from a simulation's time 0)."""
    if "periods" not in plan.sheet:
        return plan.additional
    return export.sumo_of_sheet(export.design_sheet(plan.sheet)).encode()


def list_plans(*, session: Session, actor: Actor, network_id: uuid.UUID) -> list[TrafficPlan]:
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    return list(
        session.scalars(
            select(TrafficPlan)
            .where(TrafficPlan.network_id == row.id)
            .order_by(TrafficPlan.created_at.desc(), TrafficPlan.name)
        )
    )


def get_plan(*, session: Session, actor: Actor, plan_id: uuid.UUID) -> TrafficPlan:
    plan = session.get(TrafficPlan, plan_id)
    missing = PlanNotFound("No such plan.")
    if plan is None:
        raise missing
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=plan.tenant_id)
    if not actor.can("traffic.network.read", tenant.path):
        raise missing  # a plan the actor may not read does not exist for them
    return plan


def _approver(session: Session, actor: Actor, tenant_id: uuid.UUID) -> None:
    tenant = session.get_one(Tenant, tenant_id)
    authorize(actor, "traffic.plan.approve", path=tenant.path, what="tenant")


def review_plan(
    *,
    session: Session,
    actor: Actor,
    plan_id: uuid.UUID,
    approve: bool,
    note: str = "",
) -> TrafficPlan:
    """Approve or reject a draft, once."""
    plan = get_plan(session=session, actor=actor, plan_id=plan_id)
    _approver(session, actor, plan.tenant_id)
    # Two reviews at once: the second waits for the first and then finds it reviewed.
    session.refresh(plan, with_for_update=True)
    if len(note) > MAX_NOTE:
        raise TrafficInvalidInput(
            "A review note has at most %(limit)s characters.", params={"limit": MAX_NOTE}
        )
    if plan.status != "draft":
        raise PlanStateConflict("The plan has already been reviewed.")
    if approve and actor.user_id is not None and actor.user_id == plan.created_by_user:
        raise OwnPlanReview("A plan is approved by someone other than the engineer who drafted it.")
    plan.status = "approved" if approve else "rejected"
    plan.reviewed_by = actor.name
    plan.reviewed_at = utcnow()
    plan.review_note = note.strip() or None
    audit.record(
        session=session,
        actor=actor,
        action="traffic.plan.approve" if approve else "traffic.plan.reject",
        target=f"traffic_plan:{plan.id}",
        tenant_id=plan.tenant_id,
        detail={"name": plan.name, "note": plan.review_note},
    )
    return plan


def _latest(session: Session, network_id: uuid.UUID, tls_id: str) -> TrafficPlanIssue | None:
    return session.scalars(
        select(TrafficPlanIssue)
        .where(TrafficPlanIssue.network_id == network_id, TrafficPlanIssue.tls_id == tls_id)
        .order_by(TrafficPlanIssue.seq.desc())
        .limit(1)
    ).first()


def issue_plan(
    *,
    session: Session,
    actor: Actor,
    plan_id: uuid.UUID,
    tls_ids: Sequence[str] | None = None,
) -> list[TrafficPlanIssue]:
    """Make an approved plan the active plan of its signals (or of those named), now."""
    plan = get_plan(session=session, actor=actor, plan_id=plan_id)
    _approver(session, actor, plan.tenant_id)
    session.refresh(plan, with_for_update=True)  # not issued while a review changes it
    if plan.status != "approved":
        raise PlanStateConflict("Only an approved plan is issued.")
    signals = list(plan.figures)
    chosen = list(dict.fromkeys(tls_ids)) if tls_ids else signals
    unknown = [s for s in chosen if s not in plan.figures]
    if unknown:
        raise TrafficInvalidInput(
            "The plan has no signal %(signal)s.", params={"signal": unknown[0][:200]}
        )
    now = utcnow()
    rows: list[TrafficPlanIssue] = []
    for tls_id in chosen:
        current = _latest(session, plan.network_id, tls_id)
        if current is not None and current.plan_id == plan.id:
            continue  # already running it
        row = TrafficPlanIssue(
            network_id=plan.network_id,
            tls_id=tls_id,
            seq=(current.seq if current else 0) + 1,
            action="issue",
            plan_id=plan.id,
            prior_id=current.id if current else None,
            effective_at=now,
            issued_by=actor.name,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="traffic.plan.issue",
        target=f"traffic_plan:{plan.id}",
        tenant_id=plan.tenant_id,
        detail={"name": plan.name, "signals": [r.tls_id for r in rows]},
    )
    return rows


def roll_back(
    *,
    session: Session,
    actor: Actor,
    network_id: uuid.UUID,
    tls_id: str,
    expected_seq: int | None = None,
) -> TrafficPlanIssue:
    """The signal returns to what it ran before its current plan was issued. With
    ``expected_seq`` (the change the person saw), only if nothing changed since: a form sent
    twice, or a client's retry, rolls back once."""
    network = networks.get_network(session=session, actor=actor, network_id=network_id)
    _approver(session, actor, network.tenant_id)
    current = _latest(session, network.id, tls_id)
    if expected_seq is not None and (current.seq if current else 0) != expected_seq:
        raise PlanStateConflict(
            "The plan of signal %(signal)s changed meanwhile: reload to see what it runs now.",
            params={"signal": tls_id[:200]},
        )
    if current is None or current.plan_id is None:
        raise PlanStateConflict(
            "The signal %(signal)s runs the network's own program: there is nothing to roll back.",
            params={"signal": tls_id[:200]},
        )
    prior = session.get(TrafficPlanIssue, current.prior_id) if current.prior_id else None
    row = TrafficPlanIssue(
        network_id=network.id,
        tls_id=tls_id,
        seq=current.seq + 1,
        action="rollback",
        plan_id=prior.plan_id if prior else None,
        prior_id=prior.prior_id if prior else None,
        effective_at=utcnow(),
        issued_by=actor.name,
    )
    session.add(row)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="traffic.plan.rollback",
        target=f"traffic_network:{network.id}",
        tenant_id=network.tenant_id,
        detail={
            "signal": tls_id,
            "from_plan": str(current.plan_id),
            "to_plan": str(row.plan_id) if row.plan_id else None,
        },
    )
    return row


def active_plans(*, session: Session, actor: Actor, network_id: uuid.UUID) -> list[Active]:
    """What each of the network's signals runs now, by signal id."""
    network: TrafficNetwork = networks.get_network(
        session=session, actor=actor, network_id=network_id
    )
    latest = (
        select(TrafficPlanIssue.tls_id, func.max(TrafficPlanIssue.seq).label("seq"))
        .where(TrafficPlanIssue.network_id == network.id)
        .group_by(TrafficPlanIssue.tls_id)
        .subquery()
    )
    rows = session.execute(
        select(TrafficPlanIssue, TrafficPlan.name)
        .join(
            latest,
            (TrafficPlanIssue.tls_id == latest.c.tls_id) & (TrafficPlanIssue.seq == latest.c.seq),
        )
        .outerjoin(TrafficPlan, TrafficPlan.id == TrafficPlanIssue.plan_id)
        .where(TrafficPlanIssue.network_id == network.id)
    ).all()
    found = {
        issue.tls_id: Active(
            tls_id=issue.tls_id,
            plan_id=issue.plan_id,
            plan_name=name,
            effective_at=issue.effective_at,
            issued_by=issue.issued_by,
            can_roll_back=issue.plan_id is not None,
            seq=issue.seq,
        )
        for issue, name in rows
    }
    return [found[s] for s in sorted(found)]
