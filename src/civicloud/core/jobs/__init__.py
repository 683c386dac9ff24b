"""The platform's job runner: every installed module's background jobs, one unit of work per
item, exclusive jobs on one worker at a time, and a bounded history of their runs."""

from civicloud.core.jobs.models import JobRun, JobState

__all__ = ["JobRun", "JobState"]
