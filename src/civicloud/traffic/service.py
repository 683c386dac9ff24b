"""Traffic's services over files: a network and counts in, plans and their figures out.

``optimize`` is what ``civicloud traffic optimize`` runs (and, later, the API and the console
for stored networks): read and validate, take each signal's design hour, plan it, and evaluate
the network's own program under the same demand, so that every plan comes with its before and
after figures.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
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


#: Networks of at least this many signals are planned in worker processes, one per core: a
#: city's junctions are independent until coordination. Smaller ones are planned here (the
#: workers' start costs about a second, as much as planning some two hundred junctions).
PARALLEL_FROM = 400
#: Each worker's share of the signals is sent in this many pieces, so that all finish together.
PIECES_PER_WORKER = 4

_WORKER_NETWORK: Network | None = None


def _start_worker(network: Network) -> None:
    global _WORKER_NETWORK  # noqa: PLW0603  # a worker process's one network, sent once
    _WORKER_NETWORK = network


def _plan_piece(
    signal_ids: Sequence[str],
    demand: Mapping[str, Mapping[tuple[str, str], float]],
    limits: Limits,
) -> list[SignalPlan]:
    network = _WORKER_NETWORK
    if network is None:  # pragma: no cover - every worker starts with its network
        raise RuntimeError("a planning worker without its network")
    return [plan_signal(network.signals[s], demand.get(s, {}), limits) for s in signal_ids]


class Planner:
    """Plans a network's signals one by one, here or in worker processes (``workers``; by
    default one per core for a network of ``PARALLEL_FROM`` signals or more). The same plans
    either way; workers are started once, for every demand planned until ``close``."""

    def __init__(self, network: Network, workers: int | None = None) -> None:
        self.network = network
        if workers is None:
            workers = (os.cpu_count() or 1) if len(network.signals) >= PARALLEL_FROM else 1
        self.workers = max(1, min(workers, len(network.signals)))
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Planner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def plan(
        self, demand: Mapping[str, Mapping[tuple[str, str], float]], limits: Limits
    ) -> list[SignalPlan]:
        """Every signal's own plan for the demand, in the network's order (not coordinated)."""
        ids = list(self.network.signals)
        if self.workers == 1:
            return [plan_signal(self.network.signals[s], demand.get(s, {}), limits) for s in ids]
        if self._pool is None:
            # Spawned, not forked: the caller may run threads (a server's listeners).
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.network,),
            )
        size = max(1, math.ceil(len(ids) / (self.workers * PIECES_PER_WORKER)))
        pieces = [ids[k : k + size] for k in range(0, len(ids), size)]
        futures = [
            self._pool.submit(
                _plan_piece, piece, {s: demand[s] for s in piece if s in demand}, limits
            )
            for piece in pieces
        ]
        return [plan for future in futures for plan in future.result()]


def plan_network(
    network: Network,
    demand: Mapping[str, Mapping[tuple[str, str], float]],
    limits: Limits,
    *,
    workers: int | None = None,
    planner: Planner | None = None,
) -> list[SignalPlan]:
    """Every signal's plan for the demand (veh/h per movement), neighbours coordinated."""
    if planner is None:
        with Planner(network, workers) as own:
            plans = own.plan(demand, limits)
    else:
        plans = planner.plan(demand, limits)
    plans = coordinate(network, plans, demand, limits)
    if limits.offsets == "bandwidth":
        from civicloud.traffic import bandwidth  # it reads corridors, which read stored plans

        plans = bandwidth.banded(network, plans, demand)
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
