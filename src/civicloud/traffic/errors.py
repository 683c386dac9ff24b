"""Traffic's errors: each a subclass of the core tree with a stable ``code``, so that one raise
serves every edge (a problem+json on the API, a line and an exit code on the CLI).

::

    TrafficError
    ├── TrafficInvalidInput (422, exit 2)
    │   ├── NetworkUnreadable: a network file that is not a readable SUMO network
    │   ├── NoSignals: a network without a traffic signal to time
    │   ├── CountsUnreadable: a counts file whose header or rows cannot be read at all
    │   ├── CountsRejected: counts that fail validation (the report lists every finding)
    │   ├── MappingRejected: a detector-to-movement mapping that cannot be read or does not fit
    │   │   the network (``findings`` lists each finding with its line)
    │   ├── InvalidTimingLimits: a minimum cycle over the maximum, a non-positive green, ...
    │   ├── PlanUnreadable: a plan file (SUMO additional) that cannot be read or does not fit
    │   ├── InvalidSeeds: a stored plan's evaluation takes 1 to 10 seeds
    │   ├── DemandNeeded: a plan evaluated for the first time needs the counts it was drafted from
    │   └── CountsNotThePlans: counts other than those the plan was drafted from
    ├── NetworkNotFound (404, exit 4)
    ├── PlanNotFound (404, exit 4)
    ├── MappingNotFound (404, exit 4): a network without a detector mapping yet
    ├── EvaluationNotFound (404, exit 4)
    ├── NetworkNameTaken (409, exit 5): a tenant's networks have unique names
    ├── PlanStateConflict (409, exit 5): reviewing a plan already reviewed, issuing one not
    │   approved, rolling back a signal that runs the network's own program
    ├── OwnPlanReview (403, exit 3): the engineer who drafted a plan does not approve it
    ├── SimulationFailed (500, exit 1): SUMO or one of its tools stopped with an error
    └── EvaluationFailed (500, exit 1): a stored evaluation ended failed (``civicloud traffic
        evaluate-stored`` says why)

The messages are English templates (also their msgids); the console and the CLI translate them.
"""

from __future__ import annotations

from typing import Any

from civicloud.core.errors import (
    CivicloudError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)


class TrafficError(CivicloudError):
    """Base of Traffic's errors."""

    code = "traffic.error"


class TrafficInvalidInput(TrafficError, InvalidInput):
    code = "traffic.invalid_input"


class NetworkUnreadable(TrafficInvalidInput):
    code = "traffic.network_unreadable"


class NoSignals(TrafficInvalidInput):
    code = "traffic.no_signals"


class CountsUnreadable(TrafficInvalidInput):
    code = "traffic.counts_unreadable"


class CountsRejected(TrafficInvalidInput):
    """Counts that fail validation; ``report`` carries every finding."""

    code = "traffic.counts_rejected"

    def __init__(self, message: str, /, *, report: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report


class MappingRejected(TrafficInvalidInput):
    """A detector-to-movement mapping refused whole; ``findings`` lists what is wrong, by line."""

    code = "traffic.mapping_rejected"


class InvalidTimingLimits(TrafficInvalidInput):
    code = "traffic.invalid_timing_limits"


class PlanUnreadable(TrafficInvalidInput):
    code = "traffic.plan_unreadable"


class NetworkNotFound(TrafficError, NotFound):
    code = "traffic.network_not_found"


class NetworkNameTaken(TrafficError, Conflict):
    code = "traffic.network_name_taken"


class PlanNotFound(TrafficError, NotFound):
    code = "traffic.plan_not_found"


class MappingNotFound(TrafficError, NotFound):
    code = "traffic.mapping_not_found"


class PlanStateConflict(TrafficError, Conflict):
    code = "traffic.plan_state_conflict"


class OwnPlanReview(TrafficError, PermissionDenied):
    code = "traffic.own_plan_review"


class SimulationFailed(TrafficError):
    code = "traffic.simulation_failed"
    title = "Simulation failed"


class EvaluationNotFound(TrafficError, NotFound):
    code = "traffic.evaluation_not_found"


class InvalidSeeds(TrafficInvalidInput):
    """A stored plan's evaluation takes 1 to 10 seeds."""

    code = "traffic.invalid_seeds"


class DemandNeeded(TrafficInvalidInput):
    """A plan evaluated for the first time needs the counts it was drafted from."""

    code = "traffic.demand_needed"


class CountsNotThePlans(TrafficInvalidInput):
    """Counts other than those the plan was drafted from (their SHA-256 differs)."""

    code = "traffic.counts_not_the_plans"


class EvaluationFailed(TrafficError):
    """A stored evaluation ended failed (the command that ran it says why)."""

    code = "traffic.evaluation_failed"
    title = "Evaluation failed"
