"""Traffic's services over files: a network and counts in, plans and their figures out.

``optimize`` is what ``civicloud traffic optimize`` runs (and, later, the API and the console
for stored networks): read and validate, take each signal's design hour, plan it, and evaluate
the network's own program under the same demand, so that every plan comes with its before and
after figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from civicloud.traffic.coordinate import coordinate
from civicloud.traffic.counts import CountsReport, design_demand, require_clean
from civicloud.traffic.detectors import Conversion, convert, read_any_counts, read_mapping
from civicloud.traffic.network import Network, read_network
from civicloud.traffic.optimize import (
    Limits,
    SignalPlan,
    conflicting_greens,
    evaluate_program,
    plan_signal,
)
from civicloud.traffic.spillback import Saturated, saturated_intervals


@dataclass(frozen=True)
class Optimized:
    network: Network
    report: CountsReport
    plans: tuple[SignalPlan, ...]
    #: The network's own programs under the same demand, by signal.
    before: tuple[SignalPlan, ...]
    #: Movements and intervals counted at capacity (spill-back): those signals' figures are
    #: lower bounds.
    saturated: tuple[Saturated, ...] = ()


def plan_network(
    network: Network,
    demand: Mapping[str, Mapping[tuple[str, str], float]],
    limits: Limits,
    *,
    workers: int | None = None,
) -> list[SignalPlan]:
    """Every signal's plan for the demand (veh/h per movement), neighbours coordinated."""
    plans = [
        plan_signal(signal, demand.get(signal_id, {}), limits)
        for signal_id, signal in network.signals.items()
    ]
    plans = coordinate(network, plans, demand, limits)
    for plan in plans:
        if conflicting_greens(network.signals[plan.signal_id], plan.phases):  # never: kept
            raise AssertionError(f"plan of {plan.signal_id} has conflicting greens")
    return plans


def flag_spillback(plans: Sequence[SignalPlan], saturated: Sequence[Saturated]) -> list[SignalPlan]:
    """The plans, those of signals counted at capacity flagged ``spillback``."""
    signals = {s.tls_id for s in saturated}
    return [
        replace(p, flags=(*p.flags, "spillback")) if p.signal_id in signals else p for p in plans
    ]


def optimize(network: Network, report: CountsReport, limits: Limits) -> Optimized:
    require_clean(report)
    demand = design_demand(report.accepted)
    saturated = saturated_intervals(network, report.accepted, demand)
    plans = flag_spillback(plan_network(network, demand, limits), saturated)
    before = [
        evaluate_program(signal, demand.get(signal_id, {}))
        for signal_id, signal in network.signals.items()
    ]
    return Optimized(
        network, report, tuple(plans), tuple(flag_spillback(before, saturated)), tuple(saturated)
    )


def read_inputs(
    net: Path, counts: Path, detectors: Path | None = None
) -> tuple[Network, CountsReport]:
    """The network and its counts, validated (a rejected row refuses the whole file).

    With ``detectors`` (a detector-to-movement mapping), ``counts`` is a detector counts file,
    turned into movement counts first."""
    network = read_network(net)
    mapping = detectors.read_bytes() if detectors is not None else None
    report = require_clean(read_any_counts(counts.read_bytes(), network, mapping))
    return network, report


def demand_of(report: CountsReport) -> dict[str, dict[tuple[str, str], float]]:
    """Each signal's design-hour demand, veh/h per movement."""
    return design_demand(report.accepted)


def optimize_files(
    net: Path, counts: Path, limits: Limits, detectors: Path | None = None
) -> Optimized:
    network, report = read_inputs(net, counts, detectors)
    return optimize(network, report, limits)


def convert_files(net: Path, detectors: Path, counts: Path) -> Conversion:
    """Detector counts turned into movement counts with a mapping, validated whole (a rejected
    row refuses the file, as it would refuse the movement counts)."""
    network = read_network(net)
    mapping = read_mapping(detectors.read_bytes(), network)
    conversion = convert(counts.read_bytes(), mapping, network)
    require_clean(conversion.report)
    return conversion
