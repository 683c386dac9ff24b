"""Store's errors: each a subclass of the core tree with a stable ``code``, and the S3 error it
is on the S3 port (``s3_code``, ``s3_status``), so that one raise serves every edge: an S3 XML
error on the S3 port, a problem+json on the API, a line and an exit code on the CLI.

::

    StoreError (mixin: s3_code "InternalError", 500)
    ├── InvalidInput (422, exit 2)
    │   ├── InvalidBucketName, KeyTooLong, InvalidArgument, InvalidRequest, MalformedXML,
    │   │   InvalidDigest, BadDigest, InvalidPart, InvalidPartOrder, EntityTooSmall,
    │   │   EntityTooLarge, IncompleteBody, InvalidRange (416), MissingContentLength (411),
    │   │   InvalidLocationConstraint, ContentSha256Mismatch, AuthorizationMalformed,
    │   │   InvalidEncryptionAlgorithm, TooManyParts, InvalidQuota
    ├── NotAuthenticated (401 here; S3 answers 403)
    │   ├── InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, RequestExpired
    ├── PermissionDenied: AccessDenied, QuotaExceeded
    ├── NotFound: NoSuchBucket, NoSuchKey, NoSuchVersion, NoSuchUpload, NoSuchAccessKey
    ├── Conflict: BucketAlreadyExists, BucketAlreadyOwnedByYou, BucketNotEmpty,
    │             ConditionalRequestConflict, OperationAborted
    ├── PreconditionFailed (412), NotModified (304)
    ├── MethodNotAllowed (405), NotImplemented (501)
    └── Corrupted (500): stored bytes that fail their check (bit rot), reported, never served

The messages are English templates (also their msgids): S3 clients read the English ``detail``,
the console and the CLI translate them.
"""

from __future__ import annotations

from typing import ClassVar

from civicloud.core.errors import (
    CivicloudError,
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)


class StoreError(CivicloudError):
    """Base of Store's errors; ``s3_code`` and ``s3_status`` are what the S3 port answers."""

    code = "store.error"
    s3_code: ClassVar[str] = "InternalError"
    s3_status: ClassVar[int] = 500


# ---- bad input -------------------------------------------------------------------------------


class StoreInvalidInput(StoreError, InvalidInput):
    """A request whose values break one of S3's rules."""

    code = "store.invalid_input"
    s3_code = "InvalidRequest"
    s3_status = 400


class InvalidBucketName(StoreInvalidInput):
    code = "store.invalid_bucket_name"
    s3_code = "InvalidBucketName"


class KeyTooLong(StoreInvalidInput):
    code = "store.key_too_long"
    s3_code = "KeyTooLongError"


class InvalidArgument(StoreInvalidInput):
    code = "store.invalid_argument"
    s3_code = "InvalidArgument"


class InvalidRequest(StoreInvalidInput):
    code = "store.invalid_request"
    s3_code = "InvalidRequest"


class MalformedXML(StoreInvalidInput):
    code = "store.malformed_xml"
    s3_code = "MalformedXML"


class InvalidDigest(StoreInvalidInput):
    """A Content-MD5 or checksum header that is not a valid digest."""

    code = "store.invalid_digest"
    s3_code = "InvalidDigest"


class BadDigest(StoreInvalidInput):
    """The body does not match the digest or checksum sent with it: nothing was stored."""

    code = "store.bad_digest"
    s3_code = "BadDigest"


class InvalidPart(StoreInvalidInput):
    code = "store.invalid_part"
    s3_code = "InvalidPart"


class InvalidPartOrder(StoreInvalidInput):
    code = "store.invalid_part_order"
    s3_code = "InvalidPartOrder"


class EntityTooSmall(StoreInvalidInput):
    code = "store.entity_too_small"
    s3_code = "EntityTooSmall"


class EntityTooLarge(StoreInvalidInput):
    code = "store.entity_too_large"
    s3_code = "EntityTooLarge"


class IncompleteBody(StoreInvalidInput):
    """The body ended before its declared length: nothing was stored."""

    code = "store.incomplete_body"
    s3_code = "IncompleteBody"


class InvalidRange(StoreInvalidInput):
    code = "store.invalid_range"
    s3_code = "InvalidRange"
    s3_status = 416


class MissingContentLength(StoreInvalidInput):
    code = "store.missing_content_length"
    s3_code = "MissingContentLength"
    s3_status = 411


class InvalidLocationConstraint(StoreInvalidInput):
    """A bucket asked for outside its tenant's home region (the residency rule)."""

    code = "store.invalid_location_constraint"
    s3_code = "InvalidLocationConstraint"


class ContentSha256Mismatch(StoreInvalidInput):
    code = "store.content_sha256_mismatch"
    s3_code = "XAmzContentSHA256Mismatch"


class AuthorizationMalformed(StoreInvalidInput):
    code = "store.authorization_malformed"
    s3_code = "AuthorizationHeaderMalformed"


class InvalidEncryptionAlgorithm(StoreInvalidInput):
    code = "store.invalid_encryption_algorithm"
    s3_code = "InvalidEncryptionAlgorithmError"


class TooManyParts(StoreInvalidInput):
    code = "store.too_many_parts"
    s3_code = "InvalidArgument"


class InvalidQuota(StoreInvalidInput):
    code = "store.invalid_quota"
    s3_code = "InvalidArgument"


# ---- who is asking ---------------------------------------------------------------------------


class StoreNotAuthenticated(StoreError, NotAuthenticated):
    """The request's credentials are missing or wrong (S3 answers 403 to all of these)."""

    code = "store.not_authenticated"
    s3_code = "AccessDenied"
    s3_status = 403


class InvalidAccessKeyId(StoreNotAuthenticated):
    code = "store.invalid_access_key_id"
    s3_code = "InvalidAccessKeyId"


class SignatureDoesNotMatch(StoreNotAuthenticated):
    code = "store.signature_does_not_match"
    s3_code = "SignatureDoesNotMatch"


class RequestTimeTooSkewed(StoreNotAuthenticated):
    code = "store.request_time_too_skewed"
    s3_code = "RequestTimeTooSkewed"


class RequestExpired(StoreNotAuthenticated):
    """A presigned URL past its expiry."""

    code = "store.request_expired"
    s3_code = "AccessDenied"


class AccessDenied(StoreError, PermissionDenied):
    code = "store.access_denied"
    s3_code = "AccessDenied"
    s3_status = 403


class QuotaExceeded(StoreError, PermissionDenied):
    """A write past a tenant's or a bucket's quota (bytes or objects); nothing was stored."""

    code = "store.quota_exceeded"
    s3_code = "QuotaExceeded"
    s3_status = 403


# ---- what is not there -----------------------------------------------------------------------


class StoreNotFound(StoreError, NotFound):
    code = "store.not_found"
    s3_code = "NoSuchKey"
    s3_status = 404


class NoSuchBucket(StoreNotFound):
    code = "store.no_such_bucket"
    s3_code = "NoSuchBucket"


class NoSuchKey(StoreNotFound):
    code = "store.no_such_key"
    s3_code = "NoSuchKey"


class NoSuchVersion(StoreNotFound):
    code = "store.no_such_version"
    s3_code = "NoSuchVersion"


class NoSuchUpload(StoreNotFound):
    code = "store.no_such_upload"
    s3_code = "NoSuchUpload"


class NoSuchAccessKey(StoreNotFound):
    code = "store.no_such_access_key"
    s3_code = "InvalidAccessKeyId"
    s3_status = 403


# ---- state -----------------------------------------------------------------------------------


class StoreConflict(StoreError, Conflict):
    code = "store.conflict"
    s3_code = "OperationAborted"
    s3_status = 409


class BucketAlreadyExists(StoreConflict):
    """The name is taken by another tenant's bucket (names are unique across the installation)."""

    code = "store.bucket_already_exists"
    s3_code = "BucketAlreadyExists"


class BucketAlreadyOwnedByYou(StoreConflict):
    code = "store.bucket_already_owned_by_you"
    s3_code = "BucketAlreadyOwnedByYou"


class BucketNotEmpty(StoreConflict):
    code = "store.bucket_not_empty"
    s3_code = "BucketNotEmpty"


class ConditionalRequestConflict(StoreConflict):
    """A conditional write lost a race with another write to the same key."""

    code = "store.conditional_request_conflict"
    s3_code = "ConditionalRequestConflict"


class OperationAborted(StoreConflict):
    code = "store.operation_aborted"
    s3_code = "OperationAborted"


class PreconditionFailed(StoreError):
    """An ``If-*`` condition does not hold."""

    code = "store.precondition_failed"
    title = "Precondition failed"
    status = 412
    exit_code = 5
    s3_code = "PreconditionFailed"
    s3_status = 412


class NotModified(StoreError):
    """``If-None-Match`` / ``If-Modified-Since`` on a read: answered 304 with no body."""

    code = "store.not_modified"
    title = "Not modified"
    status = 304
    exit_code = 0
    s3_code = "NotModified"
    s3_status = 304


class MethodNotAllowed(StoreError):
    code = "store.method_not_allowed"
    title = "Method not allowed"
    status = 405
    exit_code = 2
    s3_code = "MethodNotAllowed"
    s3_status = 405


class StoreNotImplemented(StoreError):
    """An S3 operation Store does not offer yet (bucket policies, CORS, tagging, …)."""

    code = "store.not_implemented"
    title = "Not implemented"
    status = 501
    exit_code = 1
    s3_code = "NotImplemented"
    s3_status = 501


class Corrupted(StoreError):
    """Stored bytes failed their authentication on read (bit rot, tampering): the read stops
    rather than serve them; ``civicloud store fsck`` reports the object."""

    code = "store.corrupted"
    title = "Stored data is damaged"
    status = 500
    exit_code = 1
    s3_code = "InternalError"
    s3_status = 500


class SlowDown(StoreError):
    """The installation is too busy for this request now (the database's queue, a lost race
    retried too often): try again. Nothing was changed."""

    code = "store.slow_down"
    title = "Service busy"
    status = 503
    exit_code = 1
    s3_code = "SlowDown"
    s3_status = 503


class MetadataTooLarge(StoreInvalidInput):
    """User metadata past S3's 2 KB."""

    code = "store.metadata_too_large"
    s3_code = "MetadataTooLarge"


class InvalidPartNumber(StoreInvalidInput):
    code = "store.invalid_part_number"
    s3_code = "InvalidPartNumber"
    s3_status = 416


class InvalidURI(StoreInvalidInput):
    code = "store.invalid_uri"
    s3_code = "InvalidURI"


__all__ = [
    "AccessDenied",
    "AuthorizationMalformed",
    "BadDigest",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "ConditionalRequestConflict",
    "ContentSha256Mismatch",
    "Corrupted",
    "EntityTooLarge",
    "EntityTooSmall",
    "IncompleteBody",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidDigest",
    "InvalidEncryptionAlgorithm",
    "InvalidLocationConstraint",
    "InvalidPart",
    "InvalidPartNumber",
    "InvalidPartOrder",
    "InvalidQuota",
    "InvalidRange",
    "InvalidRequest",
    "InvalidURI",
    "KeyTooLong",
    "MalformedXML",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "MissingContentLength",
    "NoSuchAccessKey",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NoSuchVersion",
    "NotModified",
    "OperationAborted",
    "PreconditionFailed",
    "QuotaExceeded",
    "RequestExpired",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
    "SlowDown",
    "StoreConflict",
    "StoreError",
    "StoreInvalidInput",
    "StoreNotAuthenticated",
    "StoreNotFound",
    "StoreNotImplemented",
    "TooManyParts",
]
