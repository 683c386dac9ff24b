"""Traffic's services over files: a network and counts in, plans and their figures out.

``optimize`` is what ``civicloud traffic optimize`` runs (and, later, the API and the console
for stored networks): read and validate, take each signal's design hour, plan it, and evaluate
the network's own program under the same demand, so that every plan comes with its before and
after figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from civicloud.traffic.counts import CountsReport, design_demand, read_counts, require_clean
from civicloud.traffic.network import Network, read_network
from civicloud.traffic.optimize import (
    Limits,
    SignalPlan,
    conflicting_greens,
    evaluate_program,
    plan_signal,
)


@dataclass(frozen=True)
class Optimized:
    network: Network
    report: CountsReport
    plans: tuple[SignalPlan, ...]
    #: The network's own programs under the same demand, by signal.
    before: tuple[SignalPlan, ...]


def optimize(network: Network, report: CountsReport, limits: Limits) -> Optimized:
    require_clean(report)
    demand = design_demand(report.accepted)
    plans: list[SignalPlan] = []
    before: list[SignalPlan] = []
    for signal_id, signal in network.signals.items():
        movement_demand = demand.get(signal_id, {})
        plan = plan_signal(signal, movement_demand, limits)
        if conflicting_greens(signal, plan.phases):  # the phase structure is kept: never
            raise AssertionError(f"plan of {signal_id} has conflicting greens")
        plans.append(plan)
        before.append(evaluate_program(signal, movement_demand))
    return Optimized(network, report, tuple(plans), tuple(before))


def read_inputs(net: Path, counts: Path) -> tuple[Network, CountsReport]:
    """The network and its counts, validated (a rejected row refuses the whole file)."""
    network = read_network(net)
    report = require_clean(read_counts(counts.read_bytes(), network))
    return network, report


def demand_of(report: CountsReport) -> dict[str, dict[tuple[str, str], float]]:
    """Each signal's design-hour demand, veh/h per movement."""
    return design_demand(report.accepted)


def optimize_files(net: Path, counts: Path, limits: Limits) -> Optimized:
    network, report = read_inputs(net, counts)
    return optimize(network, report, limits)
