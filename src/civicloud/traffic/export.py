"""Plans in the formats controllers and engineers' tools take.

- a SUMO additional file: one ``<tlLogic type="static">`` per signal, with its own programID
  and the network's phase structure (SUMO loads it beside the network: ``-a PLAN.add.xml``);
- timing sheets: JSON (everything, for programs) and CSV (a row per phase, safe to open in a
  spreadsheet): cycle, offset, phase sequence with each phase's duration and state, expected
  delay and level of service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from civicloud.core.csvsafe import write_csv
from civicloud.traffic.optimize import SignalPlan

PROGRAM_ID = "civicloud"


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def sumo_additional(plans: Sequence[SignalPlan], program_id: str = PROGRAM_ID) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- Fixed-time signal plans made by civicloud Traffic. -->",
        "<additional>",
    ]
    for plan in plans:
        lines.append(
            f'    <tlLogic id={quoteattr(plan.signal_id)} type="static" '
            f'programID={quoteattr(program_id)} offset="{_number(plan.offset)}">'
        )
        for phase in plan.phases:
            lines.append(
                f'        <phase duration="{_number(phase.duration)}" state="{phase.state}"/>'
            )
        lines.append("    </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def timing_sheet(plans: Sequence[SignalPlan]) -> dict[str, Any]:
    return {
        "program_id": PROGRAM_ID,
        "signals": [
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
        ],
    }


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


def timing_csv(plans: Sequence[SignalPlan]) -> bytes:
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
    return write_csv(rows, header=CSV_HEADER)
