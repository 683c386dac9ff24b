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
    │   └── PlanUnreadable: a plan file (SUMO additional) that cannot be read or does not fit
    ├── NetworkNotFound (404, exit 4)
    ├── PlanNotFound (404, exit 4)
    ├── MappingNotFound (404, exit 4): a network without a detector mapping yet
    ├── NetworkNameTaken (409, exit 5): a tenant's networks have unique names
    ├── PlanStateConflict (409, exit 5): reviewing a plan already reviewed, issuing one not
    │   approved, rolling back a signal that runs the network's own program
    ├── OwnPlanReview (403, exit 3): the engineer who drafted a plan does not approve it
    └── SimulationFailed (500, exit 1): SUMO or one of its tools stopped with an error

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
