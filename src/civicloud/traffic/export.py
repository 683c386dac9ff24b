"""Plans in the formats controllers and engineers' tools take.

- a SUMO additional file: one ``<tlLogic type="static">`` per signal, with its own programID
  and the network's phase structure (SUMO loads it beside the network: ``-a PLAN.add.xml``);
- timing sheets: JSON (everything, for programs) and CSV (a row per phase, safe to open in a
  spreadsheet): cycle, offset, phase sequence with each phase's duration and state, expected
  delay and level of service.

Time-of-day plans (:mod:`civicloud.traffic.timeofday`) give each signal one program per period
(``civicloud-p1``, ``civicloud-p2``, ...) and a ``<WAUT>`` that switches between them at each
period's start, in seconds of the day (``refTime="0"``, repeated daily: ``period="86400"``;
SUMO's time 0 is midnight). Their timing sheets carry each row's period (name, start, end).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from civicloud.core.csvsafe import write_csv
from civicloud.traffic.optimize import SignalPlan
from civicloud.traffic.timeofday import DAY_S, Period, PeriodPlan, TimeOfDay

PROGRAM_ID = "civicloud"


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tl_logic(plan: SignalPlan, program_id: str) -> list[str]:
    lines = [
        f'    <tlLogic id={quoteattr(plan.signal_id)} type="static" '
        f'programID={quoteattr(program_id)} offset="{_number(plan.offset)}">'
    ]
    for phase in plan.phases:
        lines.append(f'        <phase duration="{_number(phase.duration)}" state="{phase.state}"/>')
    lines.append("    </tlLogic>")
    return lines


_HEAD = ['<?xml version="1.0" encoding="UTF-8"?>']


def sumo_additional(plans: Sequence[SignalPlan], program_id: str = PROGRAM_ID) -> str:
    lines = [*_HEAD, "<!-- Fixed-time signal plans made by civicloud Traffic. -->", "<additional>"]
    for plan in plans:
        lines += _tl_logic(plan, program_id)
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def design_sheet(sheet: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stored plan's sheet of one period: the sheet itself, or a time-of-day plan's busiest
    period's (``design_period``)."""
    if "periods" not in sheet:
        return sheet
    periods = list(sheet["periods"])
    chosen = sheet.get("design_period")
    return next((p for p in periods if p.get("name") == chosen), periods[0] if periods else {})


def sumo_of_sheet(sheet: Mapping[str, Any], program_id: str = PROGRAM_ID) -> str:
    """The SUMO file of one period's timing sheet (``timing_sheet``, or a period of
    ``time_of_day_sheet``): a fixed-time program per signal, as ``sumo_additional`` writes it."""
    lines = [*_HEAD, "<!-- Fixed-time signal plans made by civicloud Traffic. -->", "<additional>"]
    for signal in sheet.get("signals", []):
        lines.append(
            f'    <tlLogic id={quoteattr(str(signal["tls_id"]))} type="static" '
            f'programID={quoteattr(program_id)} offset="{_number(float(signal["offset_s"]))}">'
        )
        for phase in signal["phases"]:
            lines.append(
                f'        <phase duration="{_number(float(phase["duration_s"]))}" '
                f"state={quoteattr(str(phase['state']))}/>"
            )
        lines.append("    </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def period_program_id(period: Period) -> str:
    """The programID of a period's programs: ``civicloud-p1``, ``civicloud-p2``, ..."""
    return f"{PROGRAM_ID}-{period.name}"


def waut_id(signal_id: str) -> str:
    return f"{PROGRAM_ID}-{signal_id}"


def sumo_time_of_day(plan: TimeOfDay) -> str:
    """Every signal's program per period, and per signal a WAUT switching at each period's
    start (seconds of the day, repeated daily), starting with the program of midnight's period."""
    return sumo_periods(list(plan.network.signals), plan.periods)


def sumo_periods(signal_ids: Sequence[str], periods: Sequence[PeriodPlan]) -> str:
    """:func:`sumo_time_of_day` for the periods' plans of the signals ``signal_ids``."""
    lines = [
        *_HEAD,
        "<!-- Time-of-day signal plans made by civicloud Traffic: "
        + ", ".join(f"{p.period.name} {p.period.start}-{p.period.end}" for p in periods)
        + ". -->",
        "<additional>",
    ]
    for each in periods:
        for signal_plan in each.plans:
            lines += _tl_logic(signal_plan, period_program_id(each.period))
    # The program that runs at midnight: SUMO starts there, then switches in time order.
    first = period_program_id(next(p.period for p in periods if 0 in p.period))
    for signal_id in signal_ids:
        lines.append(
            f'    <WAUT id={quoteattr(waut_id(signal_id))} refTime="0" period="{DAY_S}" '
            f"startProg={quoteattr(first)}>"
        )
        for each in periods:
            lines.append(
                f'        <wautSwitch time="{each.period.start_s}" '
                f"to={quoteattr(period_program_id(each.period))}/>"
            )
        lines.append("    </WAUT>")
    for signal_id in signal_ids:
        lines.append(
            f"    <wautJunction wautID={quoteattr(waut_id(signal_id))} "
            f"junctionID={quoteattr(signal_id)}/>"
        )
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def timing_sheet(plans: Sequence[SignalPlan]) -> dict[str, Any]:
    return {"program_id": PROGRAM_ID, "signals": _signal_sheets(plans)}


def _signal_sheets(plans: Sequence[SignalPlan]) -> list[dict[str, Any]]:
    return [
        {
            "tls_id": plan.signal_id,
            "cycle_s": plan.cycle,
            "offset_s": plan.offset,
            "lost_time_s": plan.lost_time_s,
            "webster_cycle_s": (
                round(plan.webster_cycle, 1) if plan.webster_cycle is not None else None
            ),
            "critical_flow_ratio_sum": round(plan.critical_ratio_sum, 4),
            "splits_s": list(plan.splits),
            "delay_s_per_veh": round(plan.delay_s, 1),
            "los": plan.los,
            "flags": list(plan.flags),
            "phases": [
                {
                    "index": i,
                    "duration_s": p.duration,
                    "state": p.state,
                    "green": i in plan.green_phases,
                }
                for i, p in enumerate(plan.phases)
            ],
            "lanes": [
                {
                    "lane": f"{lane.edge}_{lane.lane}",
                    "flow_vph": round(lane.flow_vph, 1),
                    "saturation_vph": round(lane.saturation_vph, 1),
                    "green_ratio": round(lane.green_ratio, 4),
                    "capacity_vph": round(lane.capacity_vph, 1),
                    "x": round(lane.x, 3),
                    "delay_s": round(lane.delay_s, 1),
                    "los": lane.los,
                }
                for lane in plan.lanes
            ],
        }
        for plan in plans
    ]


def _period_sheet(period: Period) -> dict[str, Any]:
    return {
        "name": period.name,
        "start": period.start,
        "end": period.end,
        "start_s": period.start_s,
        "end_s": period.end_s,
        "program_id": period_program_id(period),
    }


def time_of_day_sheet(plan: TimeOfDay) -> dict[str, Any]:
    """The periods in order, each with its programID and every signal's timing."""
    return periods_sheet(plan.periods)


def periods_sheet(periods: Sequence[PeriodPlan]) -> dict[str, Any]:
    """:func:`time_of_day_sheet` of the periods' plans."""
    return {
        "program_id": PROGRAM_ID,
        "time_of_day": True,
        "periods": [
            {**_period_sheet(each.period), "signals": _signal_sheets(each.plans)}
            for each in periods
        ],
        "switches": [
            {
                "time_s": each.period.start_s,
                "at": each.period.start,
                "to": period_program_id(each.period),
            }
            for each in periods
        ],
    }


def time_of_day_json(plan: TimeOfDay) -> str:
    return json.dumps(time_of_day_sheet(plan), ensure_ascii=False, indent=2) + "\n"


def timing_json(plans: Sequence[SignalPlan]) -> str:
    return json.dumps(timing_sheet(plans), ensure_ascii=False, indent=2) + "\n"


CSV_HEADER = (
    "tls_id",
    "cycle_s",
    "offset_s",
    "phase",
    "duration_s",
    "green",
    "state",
    "delay_s_per_veh",
    "los",
    "flags",
)


def _csv_rows(plans: Sequence[SignalPlan]) -> list[list[object]]:
    rows: list[list[object]] = []
    for plan in plans:
        for i, phase in enumerate(plan.phases):
            rows.append(
                [
                    plan.signal_id,
                    _number(plan.cycle),
                    _number(plan.offset),
                    i,
                    _number(phase.duration),
                    "yes" if i in plan.green_phases else "no",
                    phase.state,
                    f"{plan.delay_s:.1f}",
                    plan.los,
                    " ".join(plan.flags),
                ]
            )
    return rows


def timing_csv(plans: Sequence[SignalPlan]) -> bytes:
    return write_csv(_csv_rows(plans), header=CSV_HEADER)


TIME_OF_DAY_CSV_HEADER = ("period", "period_start", "period_end", "program_id", *CSV_HEADER)


def time_of_day_csv(plan: TimeOfDay) -> bytes:
    """A row per period, signal and phase; the period's name, start and end first."""
    rows: list[list[object]] = []
    for each in plan.periods:
        period = each.period
        head: list[object] = [period.name, period.start, period.end, period_program_id(period)]
        rows += [[*head, *row] for row in _csv_rows(each.plans)]
    return write_csv(rows, header=TIME_OF_DAY_CSV_HEADER)
