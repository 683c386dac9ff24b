"""Every core table, imported in one place for metadata-wide work (migrations, tests)."""

from civicloud.core.audit.models import AuditHead, AuditRecord
from civicloud.core.db import Base
from civicloud.core.identity.models import ApiKey, User, WebSession
from civicloud.core.jobs.models import JobRun, JobState
from civicloud.core.once import FormUse
from civicloud.core.regions.models import Region
from civicloud.core.roles.models import Role, RoleBinding
from civicloud.core.tenants.models import Tenant

__all__ = [
    "ApiKey",
    "AuditHead",
    "AuditRecord",
    "Base",
    "FormUse",
    "JobRun",
    "JobState",
    "Region",
    "Role",
    "RoleBinding",
    "Tenant",
    "User",
    "WebSession",
]
