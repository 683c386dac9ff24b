"""The platform's job runner: every installed module's background jobs, one unit of work per
item, exclusive jobs on one worker at a time, and a bounded history of their runs."""

from civicloud.core.jobs.models import JobRun, JobState
from civicloud.core.jobs.service import (
    KEEP_RUNS,
    READ,
    JobEnv,
    JobReport,
    JobStatus,
    JobWork,
    Work,
    advisory_key,
    count_runs,
    job_statuses,
    run_job,
    run_jobs,
    run_worker,
    selected_jobs,
)

__all__ = [
    "KEEP_RUNS",
    "READ",
    "JobEnv",
    "JobReport",
    "JobRun",
    "JobState",
    "JobStatus",
    "JobWork",
    "Work",
    "advisory_key",
    "count_runs",
    "job_statuses",
    "run_job",
    "run_jobs",
    "run_worker",
    "selected_jobs",
]
