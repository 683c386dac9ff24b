"""Audit: the append-only, hash-chained record of every state-changing call."""

from civicloud.core.audit.models import AuditHead, AuditRecord
from civicloud.core.audit.schemas import AuditPage, AuditRecordRead
from civicloud.core.audit.service import (
    GENESIS,
    Outcome,
    VerifyResult,
    audit_key_of,
    head_seal,
    list_records,
    record,
    record_hash,
    record_seal,
    seal_chain,
    tenant_of_target,
    verify_chain,
)

__all__ = [
    "GENESIS",
    "AuditHead",
    "AuditPage",
    "AuditRecord",
    "AuditRecordRead",
    "Outcome",
    "VerifyResult",
    "audit_key_of",
    "head_seal",
    "list_records",
    "record",
    "record_hash",
    "record_seal",
    "seal_chain",
    "tenant_of_target",
    "verify_chain",
]
