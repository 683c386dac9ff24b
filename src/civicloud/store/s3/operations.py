"""The S3 operations: each request addressed, authenticated, authorised and answered as S3
answers it, with S3's XML errors and ``x-amz-request-id`` on every answer.

Units of work are short and never held while bytes move: a read unit to find and authorise,
the bytes streamed with no transaction open, then one write unit to commit (retried once when
it lost a race to another writer of the same key).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from civicloud.core.db import utcnow
from civicloud.core.errors import CivicloudError, Conflict, ServiceBusy
from civicloud.core.tenants.models import Tenant
from civicloud.store import checksums, listing, multipart
from civicloud.store.accesslog import AccessEvent
from civicloud.store.context import OpenKey, StoreContext
from civicloud.store.errors import (
    AccessDenied,
    ConditionalRequestConflict,
    Corrupted,
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NotModified,
    OperationAborted,
    QuotaExceeded,
    SlowDown,
    StoreError,
    StoreNotImplemented,
)
from civicloud.store.models import Bucket, ObjectVersion, UploadPart
from civicloud.store.names import check_key
from civicloud.store.objects import (
    Conditions,
    NewVersion,
    StoredObject,
    Written,
    check_read_conditions,
    commit_version,
    copy_into_blob,
    delete_object,
    find_version,
    parse_range,
    read_range,
    refuse_delete_marker,
    stored_version,
    write_blob,
)
from civicloud.store.s3 import xml
from civicloud.store.s3.batching import GroupCommit
from civicloud.store.s3.requests import (
    Request,
    address,
    authenticate,
    body,
    check_region,
    content_length,
    drain,
    parse_query,
)
from civicloud.store.s3.server import Exchange
from civicloud.store.service import (
    BucketRef,
    cached_bucket_ref,
    check_acl,
    create_bucket,
    delete_bucket,
    has_room,
    list_buckets,
    peek_bucket_ref,
    set_bucket_acl,
    set_versioning,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

READ, WRITE, ADMIN, BUCKET_READ = (
    "store.object.read",
    "store.object.write",
    "store.bucket.admin",
    "store.bucket.read",
)
#: Query parameters naming sub-resources Store does not offer yet.
UNSUPPORTED = frozenset(
    {
        "policy",
        "cors",
        "tagging",
        "lifecycle",
        "website",
        "replication",
        "logging",
        "notification",
        "object-lock",
        "retention",
        "legal-hold",
        "ownershipControls",
        "publicAccessBlock",
        "analytics",
        "metrics",
        "inventory",
        "intelligent-tiering",
        "accelerate",
        "requestPayment",
        "restore",
        "select",
        "torrent",
        "policyStatus",
    }
)
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)
OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
#: A bucket's versioning state and ACL as a committing write reads them.
BUCKET_STATE = select(Bucket.versioning, Bucket.acl).where(Bucket.id == bindparam("bucket"))
#: S3 keeps at most 2 KB of user metadata (names and values).
MAX_META_BYTES = 2048
SMALL_BODY = 1 << 20
#: A streamed answer's bytes per send.
SEND_BYTES = 1 << 20


def http_date(moment: datetime) -> str:
    """A time as HTTP headers write it."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def quoted(etag: str) -> str:
    return f'"{etag}"'


def batched(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``pieces`` joined into runs of about ``size`` bytes: segments (64 KiB) go out about a
    mebibyte per send, since one send each cost more than copying them together."""
    batch: list[bytes] = []
    held = 0
    for piece in pieces:
        batch.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(batch)
            batch, held = [], 0
    if batch:
        yield b"".join(batch)


class S3:
    """The S3 port's dispatcher: ``S3(context)(exchange)`` answers one request."""

    def __init__(self, context: StoreContext) -> None:
        self.context = context
        self.settings = context.settings
        # SQLite writes one transaction at a time: the port's writes are committed in groups
        # by one thread (one sync for the writes waiting together), rather than each waiting
        # its turn in SQLite's busy handler.
        self._group: GroupCommit | None = GroupCommit(context.db) if context.db.is_sqlite else None

    # ---- the frame around every operation ------------------------------------------------

    def __call__(self, ex: Exchange) -> None:
        started = time.monotonic()
        request = Request(ex=ex, id=secrets.token_hex(8).upper(), bucket=None, key=None, query={})
        status, code = 200, ""
        try:
            request.query = parse_query(ex.raw_query)
            request.bucket, request.key, request.virtual = address(ex, self.settings.domain)
            if request.key is not None:
                check_key(request.key)
            authenticate(self.context, request)
            status = self.route(request)
        except StoreError as error:
            status, code = self.fail(request, error)
        except ServiceBusy as error:
            status, code = self.fail(request, SlowDown(error.message, params=error.params))
        except Conflict as error:
            # A write that kept losing its race: a conditional one is S3's 409 (the client
            # decides again), any other is told to slow down and retry.
            conditional = request.header("if-match") or request.header("if-none-match")
            kind = ConditionalRequestConflict if conditional else SlowDown
            status, code = self.fail(request, kind(error.message, params=error.params))
        except CivicloudError as error:
            status, code = self.fail(request, _wrap(error))
        except (ConnectionError, TimeoutError):
            ex.close_after = True
            status, code = 499, "ClientGone"
        except Exception:
            log.exception("s3: %s %s failed", ex.method, ex.raw_path[:200])
            status, code = self.fail(
                request, StoreError("We encountered an internal error. Please try again.")
            )
        self.context.log.record(
            AccessEvent(
                at=utcnow(),
                tenant_id=request.tenant_id if isinstance(request.tenant_id, uuid.UUID) else None,
                bucket=(request.bucket or "")[:63],
                key=(request.key or "")[:1024],
                operation=request.operation or ex.method,
                status=status,
                error_code=code[:60],
                bytes_in=ex.body_read,
                bytes_out=ex.bytes_out,
                principal=(request.caller.actor.name if request.caller else "anonymous")[:160],
                access_key_id=request.caller.access_key_id if request.caller else "",
                remote=ex.remote[:64],
                request_id=request.id,
                millis=int((time.monotonic() - started) * 1000),
            )
        )

    def fail(self, request: Request, error: StoreError) -> tuple[int, str]:
        ex = request.ex
        if ex.sent_headers:
            ex.abort_connection()
            return error.s3_status, error.s3_code
        drain(request)
        headers = self.common(request)
        extra: list[tuple[str, str]] = []
        if error.extra.get("delete_marker"):
            headers.append(("x-amz-delete-marker", "true"))
            if error.extra.get("version_id"):
                headers.append(("x-amz-version-id", str(error.extra["version_id"])))
        if error.extra.get("region"):
            extra.append(("Region", str(error.extra["region"])))
            headers.append(("x-amz-bucket-region", str(error.extra["region"])))
        if (
            error.s3_code in ("NoSuchBucket", "BucketNotEmpty", "BucketAlreadyExists")
            and request.bucket
        ):
            extra.append(("BucketName", request.bucket))
        if error.s3_code in ("NoSuchKey",) and request.key:
            extra.append(("Key", request.key))
        if isinstance(error, SlowDown):
            headers.append(("Retry-After", "1"))
        if error.s3_status == 304:
            etag = error.extra.get("etag")
            if etag:
                headers.append(("ETag", quoted(str(etag))))
            ex.respond(304, headers)
            return 304, ""
        document = xml.error_document(
            error.s3_code,
            error.detail,
            resource=request.resource,
            request_id=request.id,
            extra=extra,
        )
        headers.append(("Content-Type", "application/xml"))
        ex.respond(error.s3_status, headers, document)
        return error.s3_status, error.s3_code

    def common(self, request: Request) -> list[tuple[str, str]]:
        return [
            ("x-amz-request-id", request.id),
            ("x-amz-id-2", request.id),
            ("Date", http_date(utcnow())),
            ("Server", "civicloud"),
        ]

    def ok_xml(
        self,
        request: Request,
        document: bytes,
        status: int = 200,
        extra: list[tuple[str, str]] | None = None,
    ) -> int:
        headers = self.common(request) + (extra or [])
        headers.append(("Content-Type", "application/xml"))
        request.ex.respond(status, headers, document)
        return status

    def ok_empty(
        self, request: Request, status: int = 200, extra: list[tuple[str, str]] | None = None
    ) -> int:
        request.ex.respond(status, self.common(request) + (extra or []))
        return status

    def read_unit(self, work: Callable[[Session], T]) -> T:
        with self.context.db.unit_of_work(write=False) as session:
            return work(session)

    def bucket_ref(self, name: str) -> BucketRef:
        """The bucket ``name``: from the cache without a unit of work when it is fresh there."""
        ref = peek_bucket_ref(self.context.db, name)
        return ref if ref is not None else self.read_unit(lambda s: cached_bucket_ref(s, name))

    def write_unit(self, work: Callable[[Session], T]) -> T:
        if self._group is None:
            return self.context.db.run(work, attempts=3)
        return self._group.run(work)

    # ---- routing ---------------------------------------------------------------------------

    def route(self, request: Request) -> int:
        method, query = request.ex.method, request.query
        unsupported = UNSUPPORTED.intersection(query)
        if unsupported == {"tagging"} and method == "GET" and request.key is not None:
            return self.get_object_tagging(request)
        if unsupported:
            request.operation = f"{method}:{sorted(unsupported)[0]}"
            self._bucket_for(request, BUCKET_READ if method in ("GET", "HEAD") else ADMIN)
            raise StoreNotImplemented(
                "A header or query you provided requested a function that is not implemented.",
            )
        if request.bucket is None:
            if method == "GET":
                return self.list_buckets(request)
            raise MethodNotAllowed("The specified method is not allowed against this resource.")
        if request.key is None:
            return self.bucket_operation(request, method, query)
        return self.object_operation(request, method, query)

    def bucket_operation(self, request: Request, method: str, query: dict[str, str]) -> int:
        if method == "PUT":
            if "versioning" in query:
                return self.put_versioning(request)
            if "acl" in query:
                return self.put_bucket_acl(request)
            if "encryption" in query:
                return self.put_encryption(request)
            return self.create_bucket(request)
        if method in ("GET", "HEAD") and method == "HEAD":
            return self.head_bucket(request)
        if method == "GET":
            if "location" in query:
                return self.get_location(request)
            if "versioning" in query:
                return self.get_versioning(request)
            if "acl" in query:
                return self.get_bucket_acl(request)
            if "encryption" in query:
                return self.get_encryption(request)
            if "versions" in query:
                return self.list_versions(request)
            if "uploads" in query:
                return self.list_uploads(request)
            if query.get("list-type") == "2":
                return self.list_objects(request, v2=True)
            if "list-type" in query:
                raise InvalidArgument("Invalid List Type specified.")
            return self.list_objects(request, v2=False)
        if method == "DELETE":
            if "encryption" in query:
                raise StoreNotImplemented("Encryption at rest cannot be turned off.")
            return self.delete_bucket(request)
        if method == "POST" and "delete" in query:
            return self.delete_objects(request)
        raise MethodNotAllowed("The specified method is not allowed against this resource.")

    def object_operation(self, request: Request, method: str, query: dict[str, str]) -> int:
        if method == "PUT":
            if "uploadId" in query:
                if request.header("x-amz-copy-source"):
                    return self.upload_part_copy(request)
                return self.upload_part(request)
            if "acl" in query:
                return self.put_object_acl(request)
            if request.header("x-amz-copy-source"):
                return self.copy_object(request)
            return self.put_object(request)
        if method in ("GET", "HEAD"):
            if method == "GET" and "uploadId" in query:
                return self.list_parts(request)
            if method == "GET" and "acl" in query:
                return self.get_object_acl(request)
            if method == "GET" and "attributes" in query:
                return self.get_attributes(request)
            return self.get_object(request)
        if method == "DELETE":
            if "uploadId" in query:
                return self.abort_upload(request)
            return self.delete_object(request)
        if method == "POST":
            if "uploads" in query:
                return self.create_upload(request)
            if "uploadId" in query:
                return self.complete_upload(request)
        raise MethodNotAllowed("The specified method is not allowed against this resource.")

    # ---- authorisation ---------------------------------------------------------------------

    def _bucket_for(
        self,
        request: Request,
        permission: str,
        *,
        object_acl: str | None = None,
        per_key: bool = False,
        public: bool = False,
        by_acl: bool = True,
    ) -> BucketRef:
        assert request.bucket is not None
        name = request.bucket
        ref = self.bucket_ref(name)
        request.tenant_id = ref.tenant_id
        check_region(request, ref.region_code)
        self.allow(
            request, ref, permission, object_acl=object_acl, per_key=per_key, public=public,
            by_acl=by_acl,
        )  # fmt: skip
        return ref

    def allow(
        self,
        request: Request,
        ref: BucketRef,
        permission: str,
        *,
        object_acl: str | None = None,
        per_key: bool = False,
        public: bool = False,
        by_acl: bool = True,
    ) -> None:
        """Raise ``AccessDenied`` unless the caller's grants, or the bucket's or object's ACL,
        allow ``permission`` here. ``per_key``: the operation checks each key it touches
        itself (DeleteObjects); ``public``: a bucket-level read that a public bucket answers
        anyone (HeadBucket, GetBucketLocation); ``by_acl=False``: only grants count (changing
        an ACL is the owner's)."""
        caller = request.caller
        write = permission in (WRITE, ADMIN)
        if caller is not None:
            if not caller.allows(ref.name, request.key, write=write, per_key=per_key):
                raise AccessDenied("Access Denied")
            if caller.actor.can(permission, ref.tenant_path):
                return
        if not by_acl:
            raise AccessDenied("Access Denied")
        if public:
            permission = READ
        # A bucket's public-read (or authenticated-read) ACL opens its listing and its objects'
        # reads, as an "open data" bucket needs; an object's own ACL opens that object alone.
        if permission == READ:
            acls = {ref.acl} | ({object_acl} if object_acl else set())
            if acls & {"public-read", "public-read-write"}:
                return
            if caller is not None and "authenticated-read" in acls:
                return
        if permission == WRITE and ref.acl == "public-read-write":
            return
        raise AccessDenied("Access Denied")

    # ---- buckets ---------------------------------------------------------------------------

    def list_buckets(self, request: Request) -> int:
        request.operation = "ListBuckets"
        caller = request.caller
        if caller is None:
            raise AccessDenied("Access Denied")
        actor = caller.actor

        def work(session: Session) -> tuple[list[Bucket], dict[uuid.UUID, str]]:
            rows = list(list_buckets(session=session, actor=actor))
            slugs = dict(
                session.execute(
                    select(Tenant.id, Tenant.slug).where(Tenant.id == actor.tenant_id)
                ).all()
            )
            return rows, slugs

        rows, slugs = self.read_unit(work)
        if caller.buckets is not None:
            rows = [b for b in rows if b.name in caller.buckets]
        doc = xml.Doc("ListAllMyBucketsResult")
        xml.owner(
            doc,
            (actor.tenant_id or uuid.UUID(int=0)).hex,
            slugs.get(actor.tenant_id, actor.name) if actor.tenant_id else actor.name,
        )
        doc.open("Buckets")
        for bucket in rows:
            doc.open("Bucket").leaf("Name", bucket.name).leaf("CreationDate", bucket.created_at)
            doc.leaf("BucketRegion", bucket.region_code).close()
        doc.close()
        return self.ok_xml(request, doc.bytes())

    def create_bucket(self, request: Request) -> int:
        request.operation = "CreateBucket"
        caller = request.caller
        if caller is None:
            raise AccessDenied("Access Denied")
        if caller.read_only or caller.buckets is not None or caller.prefixes is not None:
            raise AccessDenied("Access Denied")
        assert request.bucket is not None
        raw = self.small_body(request)
        location: str | None = None
        if raw.strip():
            root = xml.parse(raw, "CreateBucketConfiguration")
            location = xml.text_of(root, "LocationConstraint")
        acl = request.header("x-amz-acl") or "private"
        check_acl(acl)
        if any(h.startswith("x-amz-grant-") for h in request.headers):
            raise StoreNotImplemented("Grants other than canned ACLs are not implemented.")
        if (request.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true":
            raise StoreNotImplemented("Object lock is not implemented.")
        name = request.bucket

        def work(session: Session) -> Bucket:
            return create_bucket(
                session=session,
                actor=caller.actor,
                context=self.context,
                name=name,
                location=location,
                acl=acl,
            )

        bucket = self.write_unit(work)
        request.tenant_id = bucket.tenant_id
        return self.ok_empty(request, extra=[("Location", f"/{name}")])

    def head_bucket(self, request: Request) -> int:
        request.operation = "HeadBucket"
        ref = self._bucket_for(request, BUCKET_READ, public=True)
        return self.ok_empty(request, extra=[("x-amz-bucket-region", ref.region_code)])

    def get_location(self, request: Request) -> int:
        request.operation = "GetBucketLocation"
        ref = self._bucket_for(request, BUCKET_READ, public=True)
        doc = xml.Doc("LocationConstraint", namespace=True)
        doc.raw(xml.escape(ref.region_code))  # type: ignore[attr-defined]
        return self.ok_xml(request, doc.bytes())

    def delete_bucket(self, request: Request) -> int:
        request.operation = "DeleteBucket"
        ref = self._bucket_for(request, ADMIN)
        caller = request.caller
        assert caller is not None
        self.write_unit(lambda s: delete_bucket(session=s, actor=caller.actor, name=ref.name))
        return self.ok_empty(request, 204)

    def get_versioning(self, request: Request) -> int:
        request.operation = "GetBucketVersioning"
        ref = self._bucket_for(request, BUCKET_READ)
        doc = xml.Doc("VersioningConfiguration")
        if ref.versioning != "off":
            doc.leaf("Status", ref.versioning.capitalize())
        return self.ok_xml(request, doc.bytes())

    def put_versioning(self, request: Request) -> int:
        request.operation = "PutBucketVersioning"
        ref = self._bucket_for(request, ADMIN)
        root = xml.parse(self.small_body(request), "VersioningConfiguration")
        status = xml.text_of(root, "Status")
        if xml.text_of(root, "MfaDelete") == "Enabled":
            raise StoreNotImplemented("MFA delete is not implemented.")
        if status is None:
            return self.ok_empty(request)
        caller = request.caller
        assert caller is not None
        self.write_unit(
            lambda s: set_versioning(session=s, actor=caller.actor, name=ref.name, status=status)
        )
        return self.ok_empty(request)

    def acl_document(self, request: Request, ref: BucketRef, acl: str) -> bytes:
        owner_id, owner_name = ref.tenant_id.hex, ref.name
        doc = xml.Doc("AccessControlPolicy")
        xml.owner(doc, owner_id, owner_name)
        doc.open("AccessControlList")
        grants = [("owner", "FULL_CONTROL")]
        if acl in ("public-read", "public-read-write"):
            grants.append(("http://acs.amazonaws.com/groups/global/AllUsers", "READ"))
        if acl == "public-read-write":
            grants.append(("http://acs.amazonaws.com/groups/global/AllUsers", "WRITE"))
        if acl == "authenticated-read":
            grants.append(("http://acs.amazonaws.com/groups/global/AuthenticatedUsers", "READ"))
        for who, permission in grants:
            doc.open("Grant")
            if who == "owner":
                doc.raw(
                    '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
                )
                doc.leaf("ID", owner_id).leaf("DisplayName", owner_name).raw("</Grantee>")
            else:
                doc.raw(
                    '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                )
                doc.leaf("URI", who).raw("</Grantee>")
            doc.leaf("Permission", permission).close()
        return doc.bytes()

    def get_bucket_acl(self, request: Request) -> int:
        request.operation = "GetBucketAcl"
        ref = self._bucket_for(request, BUCKET_READ)
        return self.ok_xml(request, self.acl_document(request, ref, ref.acl))

    def canned_from_request(self, request: Request) -> str:
        acl = request.header("x-amz-acl")
        raw = self.small_body(request)
        if acl is None:
            if raw.strip():
                raise StoreNotImplemented("Only canned ACLs (x-amz-acl) are implemented.")
            raise InvalidRequest("Set a canned ACL with the x-amz-acl header.")
        return check_acl(acl)

    def put_bucket_acl(self, request: Request) -> int:
        request.operation = "PutBucketAcl"
        ref = self._bucket_for(request, ADMIN)
        acl = self.canned_from_request(request)
        caller = request.caller
        assert caller is not None
        self.write_unit(
            lambda s: set_bucket_acl(session=s, actor=caller.actor, name=ref.name, acl=acl)
        )
        return self.ok_empty(request)

    def get_encryption(self, request: Request) -> int:
        request.operation = "GetBucketEncryption"
        self._bucket_for(request, BUCKET_READ)
        doc = xml.Doc("ServerSideEncryptionConfiguration").open("Rule")
        doc.open("ApplyServerSideEncryptionByDefault").leaf("SSEAlgorithm", "AES256").close()
        doc.leaf("BucketKeyEnabled", False).close()
        return self.ok_xml(request, doc.bytes())

    def put_encryption(self, request: Request) -> int:
        request.operation = "PutBucketEncryption"
        self._bucket_for(request, ADMIN)
        root = xml.parse(self.small_body(request), "ServerSideEncryptionConfiguration")
        algorithms = [e.text for e in root.iter() if xml.local(e.tag) == "SSEAlgorithm"]
        if any(a != "AES256" for a in algorithms):
            raise StoreNotImplemented(
                "Only SSE-S3 (AES256) encryption is offered: it is always on."
            )
        return self.ok_empty(request)

    # ---- listing ---------------------------------------------------------------------------

    def _within_prefixes(self, request: Request, prefix: str) -> None:
        """A key narrowed to some prefixes lists inside them only."""
        caller = request.caller
        if (
            caller is not None
            and caller.prefixes is not None
            and not prefix.startswith(caller.prefixes)
        ):
            raise AccessDenied("Access Denied")

    def _list_params(self, request: Request) -> tuple[str, str, int, bool]:
        query = request.query
        prefix = query.get("prefix", "")
        self._within_prefixes(request, prefix)
        delimiter = query.get("delimiter", "")
        raw_max = query.get("max-keys", "1000")
        if not (raw_max.isascii() and raw_max.removeprefix("-").isdigit()) or len(raw_max) > 12:
            raise InvalidArgument("Provided max-keys not an integer or within integer range")
        max_keys = int(raw_max)
        if max_keys < 0:
            raise InvalidArgument("Argument maxKeys must be an integer between 0 and 2147483647")
        encoding = query.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise InvalidArgument("Invalid Encoding Method specified in Request")
        return prefix, delimiter, min(max_keys, 1000), encoding == "url"

    def list_objects(self, request: Request, *, v2: bool) -> int:
        request.operation = "ListObjectsV2" if v2 else "ListObjects"
        ref = self._bucket_for(request, READ)
        prefix, delimiter, max_keys, url = self._list_params(request)
        query = request.query
        token = query.get("continuation-token")
        if v2:
            start = query.get("start-after") or None
            if token is not None:
                start = _decode_token(token)
        else:
            start = query.get("marker") or None
        page = self.read_unit(
            lambda s: listing.list_objects(
                s, ref.id, prefix=prefix, delimiter=delimiter, start_after=start, max_keys=max_keys
            )
        )
        fetch_owner = not v2 or query.get("fetch-owner") == "true"
        doc = xml.Doc("ListBucketResult").leaf("Name", ref.name)
        doc.leaf("Prefix", xml.encoded(prefix, url))
        if v2:
            if token is not None:
                doc.leaf("ContinuationToken", token)
            if query.get("start-after"):
                doc.leaf("StartAfter", xml.encoded(query["start-after"], url))
            doc.leaf("KeyCount", len(page.entries) + len(page.prefixes))
        else:
            doc.leaf("Marker", xml.encoded(query.get("marker", ""), url))
        doc.leaf("MaxKeys", max_keys)
        if delimiter:
            doc.leaf("Delimiter", xml.encoded(delimiter, url))
        if url:
            doc.leaf("EncodingType", "url")
        doc.leaf("IsTruncated", page.truncated)
        if page.truncated and page.next_marker is not None:
            if v2:
                doc.leaf("NextContinuationToken", _encode_token(page.next_marker))
            else:
                # Given always (S3 gives it with a delimiter): a page cut short by deleted
                # keys has no last key of its own to continue from.
                doc.leaf("NextMarker", xml.encoded(page.next_marker, url))
        owner_id = ref.tenant_id.hex
        for entry in page.entries:
            doc.open("Contents").leaf("Key", xml.encoded(entry.key, url))
            doc.leaf("LastModified", entry.created_at).leaf("ETag", quoted(entry.etag))
            if entry.checksum_algorithm:
                doc.leaf("ChecksumAlgorithm", entry.checksum_algorithm)
                if entry.checksum_type:
                    doc.leaf("ChecksumType", entry.checksum_type)
            doc.leaf("Size", entry.size)
            if fetch_owner:
                xml.owner(doc, owner_id, ref.name)
            doc.leaf("StorageClass", "STANDARD").close()
        for common in page.prefixes:
            doc.open("CommonPrefixes").leaf("Prefix", xml.encoded(common, url)).close()
        return self.ok_xml(request, doc.bytes())

    def list_versions(self, request: Request) -> int:
        request.operation = "ListObjectVersions"
        ref = self._bucket_for(request, READ)
        prefix, delimiter, max_keys, url = self._list_params(request)
        key_marker = request.query.get("key-marker") or None
        version_marker = request.query.get("version-id-marker") or None
        if version_marker and not key_marker:
            raise InvalidArgument("A version-id marker cannot be specified without a key marker.")
        page = self.read_unit(
            lambda s: listing.list_versions(
                s,
                ref.id,
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                version_marker=version_marker,
                max_keys=max_keys,
            )
        )
        doc = xml.Doc("ListVersionsResult").leaf("Name", ref.name)
        doc.leaf("Prefix", xml.encoded(prefix, url))
        doc.leaf("KeyMarker", xml.encoded(key_marker or "", url))
        doc.leaf("VersionIdMarker", version_marker or "")
        if page.truncated:
            doc.leaf("NextKeyMarker", xml.encoded(page.next_marker or "", url))
            if page.next_version:
                doc.leaf("NextVersionIdMarker", page.next_version)
        doc.leaf("MaxKeys", max_keys)
        if delimiter:
            doc.leaf("Delimiter", xml.encoded(delimiter, url))
        if url:
            doc.leaf("EncodingType", "url")
        doc.leaf("IsTruncated", page.truncated)
        owner_id = ref.tenant_id.hex
        for entry in page.entries:
            doc.open("DeleteMarker" if entry.is_delete_marker else "Version")
            doc.leaf("Key", xml.encoded(entry.key, url)).leaf("VersionId", entry.version_id)
            doc.leaf("IsLatest", entry.is_latest).leaf("LastModified", entry.created_at)
            if not entry.is_delete_marker:
                doc.leaf("ETag", quoted(entry.etag)).leaf("Size", entry.size)
                if entry.checksum_algorithm:
                    doc.leaf("ChecksumAlgorithm", entry.checksum_algorithm)
                doc.leaf("StorageClass", "STANDARD")
            xml.owner(doc, owner_id, ref.name)
            doc.close()
        for common in page.prefixes:
            doc.open("CommonPrefixes").leaf("Prefix", xml.encoded(common, url)).close()
        return self.ok_xml(request, doc.bytes())

    # ---- writing objects -------------------------------------------------------------------

    def small_body(self, request: Request) -> bytes:
        """A request body that must be small (XML), read whole."""
        declared = content_length(request) or 0
        if declared > xml.MAX_XML_BYTES:
            raise MalformedXML("The XML you provided was too large.")
        decoded = body(request, max_bytes=xml.MAX_XML_BYTES, required=False)
        data = bytearray()
        while True:
            piece = decoded.incoming.read(65536)
            if not piece:
                break
            data.extend(piece)
            if len(data) > xml.MAX_XML_BYTES:
                raise MalformedXML("The XML you provided was too large.")
        if decoded.incoming.content_md5 is not None:
            import hashlib

            if (
                hashlib.md5(bytes(data), usedforsecurity=False).digest()
                != decoded.incoming.content_md5
            ):
                from civicloud.store.errors import BadDigest

                raise BadDigest("The Content-MD5 you specified did not match what we received.")
        return bytes(data)

    def object_headers(self, request: Request) -> tuple[dict[str, str], dict[str, str], str]:
        """The stored headers, user metadata and canned ACL a write sets."""
        headers: dict[str, str] = {}
        for name in STORED_HEADERS:
            value = request.header(name)
            if value is None:
                continue
            if name == "content-encoding":
                kept = [v.strip() for v in value.split(",") if v.strip().lower() != "aws-chunked"]
                if not kept:
                    continue
                value = ",".join(kept)
            headers[name] = value
        meta = {
            name[len("x-amz-meta-") :]: value
            for name, value in request.headers.items()
            if name.startswith("x-amz-meta-")
        }
        if sum(len(k) + len(v) for k, v in meta.items()) > MAX_META_BYTES:
            raise MetadataTooLarge(
                "Your metadata headers exceed the maximum allowed metadata size.",
                params={"max_size": MAX_META_BYTES},
            )
        acl = check_acl(request.header("x-amz-acl") or "private")
        if any(h.startswith("x-amz-grant-") for h in request.headers):
            raise StoreNotImplemented("Grants other than canned ACLs are not implemented.")
        sse = request.header("x-amz-server-side-encryption")
        if sse is not None and sse != "AES256":
            raise StoreNotImplemented("Only SSE-S3 (AES256) encryption is offered.")
        if request.header("x-amz-server-side-encryption-customer-algorithm"):
            raise StoreNotImplemented("Customer-provided encryption keys are not implemented.")
        return headers, meta, acl

    def conditions(self, request: Request) -> Conditions:
        return Conditions(
            if_none_match=request.header("if-none-match"), if_match=request.header("if-match")
        )

    def prepare_write(
        self,
        ref: BucketRef,
        size: int | None,
        *,
        key: str | None = None,
        conditions: Conditions | None = None,
    ) -> OpenKey:
        """Before any byte is read, in one read unit: refuse an upload that cannot fit the
        quotas or whose conditions cannot hold (the commit checks both again, atomically), and
        open the tenant's data key. A small body with no conditions skips the unit when the
        key is kept: refusing it after reading it costs as little, and the commit decides."""
        if size is not None and size <= SMALL_BODY and (conditions is None or not conditions.any):
            kept = self.context.cached_active_key(ref.tenant_id)
            if kept is not None:
                return kept

        def work(session: Session) -> tuple[bool, OpenKey | None]:
            fits = size is None or has_room(session, bucket_id=ref.id, size=size)
            if conditions is not None and conditions.any and key is not None:
                _early_conditions(session, ref, key, conditions)
            return fits, self.context.active_key(session, ref.tenant_id)

        fits, opened = self.read_unit(work)
        if not fits:
            raise QuotaExceeded("The quota of the bucket or its tenant would be exceeded.")
        if opened is None:
            raise StoreError("The bucket's tenant has no data key.")
        return opened

    def put_object(self, request: Request) -> int:
        request.operation = "PutObject"
        ref = self._bucket_for(request, WRITE)
        assert request.key is not None
        headers, meta, acl = self.object_headers(request)
        headers.setdefault("content-type", "binary/octet-stream")
        conditions = self.conditions(request)
        incoming = body(request, max_bytes=self.settings.max_put_bytes)
        key = self.prepare_write(
            ref, incoming.incoming.length, key=request.key, conditions=conditions
        )
        written = write_blob(self.context, key, incoming.incoming)
        version = self.commit_written(request, ref, written, headers, meta, acl, conditions)
        extra = [("ETag", quoted(written.etag)), ("x-amz-server-side-encryption", "AES256")]
        if version.version_id != "null":
            extra.append(("x-amz-version-id", version.version_id))
        if written.algorithm and written.checksum is not None:
            extra.append((checksums.header_name(written.algorithm), _b64(written.checksum) or ""))
            extra.append(("x-amz-checksum-type", "FULL_OBJECT"))
        return self.ok_empty(request, extra=extra)

    def commit_written(
        self,
        request: Request,
        ref: BucketRef,
        written: Written,
        headers: dict[str, str],
        meta: dict[str, str],
        acl: str,
        conditions: Conditions,
    ) -> ObjectVersion:
        """Commit a single-blob object whose bytes are durable (PutObject, CopyObject) as the
        request's key; its blob is discarded if the commit is refused."""
        assert request.key is not None
        owner = request.caller.actor.user_id if request.caller else None
        new = NewVersion(
            size=written.size,
            etag=written.etag,
            headers=headers,
            meta=meta,
            acl=acl,
            checksum_algorithm=written.algorithm,
            checksum_value=_b64(written.checksum),
            checksum_type="FULL_OBJECT" if written.algorithm else None,
            blob_id=written.blob_id,
            data_key_id=written.data_key_id,
        )
        key = request.key
        return self.commit_or_discard(
            [written.blob_id],
            lambda s: commit_version(
                session=s,
                bucket=self.fresh(s, ref),
                key=key,
                new=new,
                owner_id=owner,
                conditions=conditions,
            ),
        )

    def fresh(self, session: Session, ref: BucketRef) -> BucketRef:
        """The bucket as the committing transaction sees it (versioning may have changed)."""
        bucket = session.connection().execute(BUCKET_STATE, {"bucket": ref.id}).first()
        if bucket is None:
            raise NoSuchBucket("The specified bucket does not exist.")
        return BucketRef(
            ref.id,
            ref.name,
            ref.tenant_id,
            ref.tenant_path,
            ref.region_code,
            bucket.versioning,
            bucket.acl,
        )

    def commit_or_discard(self, blobs: list[str], work: Callable[[Session], T]) -> T:
        """Commit ``work``; if it fails, the blobs written for it are deleted (never referenced)."""
        try:
            return self.write_unit(work)
        except CivicloudError:
            # A refusal or a lost race: the transaction was rolled back, nothing names the
            # blobs. (Any other failure, such as a connection lost while committing, leaves
            # them: the commit may have happened, and fsck removes them if it did not.)
            for blob in blobs:
                try:
                    self.context.backend.delete(blob)
                except Exception:  # fsck removes what is left
                    log.warning("s3: could not remove unreferenced blob %s", blob)
            raise

    def copy_source(self, request: Request) -> tuple[BucketRef, StoredObject]:
        raw = request.header("x-amz-copy-source") or ""
        source, _, version_part = raw.partition("?")
        source = unquote(source).lstrip("/")
        bucket, slash, key = source.partition("/")
        if not slash or not key or not bucket:
            raise InvalidArgument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
            )
        check_key(key)
        version_id = None
        if version_part:
            name, _, value = version_part.partition("=")
            if name != "versionId" or not value:
                raise InvalidArgument("The copy source version id is not valid.")
            version_id = unquote(value)
        src = self.bucket_ref(bucket)
        saved_key = request.key
        request.key = key
        try:
            try:
                version = self.read_unit(lambda s: find_version(s, src, key, version_id))
            except StoreError:
                self.allow(request, src, READ)  # a refusal hides whether the key is there
                raise
            self.allow(request, src, READ, object_acl=version.acl)
        finally:
            request.key = saved_key
        if version.is_delete_marker:
            if version_id is not None:
                raise InvalidRequest(
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                )
            raise NoSuchKey("The specified key does not exist.")
        stored = self.read_unit(lambda s: stored_version(s, self.context, src, key, version_id))
        check_read_conditions(request.headers, stored.etag, stored.last_modified, copy=True)
        return src, stored

    def copy_object(self, request: Request) -> int:
        request.operation = "CopyObject"
        ref = self._bucket_for(request, WRITE)
        assert request.key is not None
        src_ref, source = self.copy_source(request)
        directive = (request.header("x-amz-metadata-directive") or "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise InvalidArgument("Unknown metadata directive.")
        headers, meta, acl = self.object_headers(request)
        if directive == "COPY":
            headers, meta = dict(source.headers), dict(source.meta)
        else:
            headers.setdefault("content-type", "binary/octet-stream")
        same = src_ref.id == ref.id and source.key == request.key
        if (
            same
            and directive == "COPY"
            and not request.header("x-amz-checksum-algorithm")
            and ref.versioning == "off"
        ):
            raise InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes."
            )
        if source.size > self.settings.max_put_bytes:
            raise InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            )
        algorithm = (
            request.header("x-amz-checksum-algorithm") or source.checksum_algorithm or ""
        ).upper() or None
        if algorithm is not None and algorithm not in checksums.ALGORITHMS:
            raise InvalidRequest("Checksum algorithm provided is unsupported.")
        conditions = self.conditions(request)
        key = self.prepare_write(ref, source.size)
        drain(request)
        written = (
            copy_into_blob(self.context, key, source, 0, source.size - 1, algorithm)
            if source.size
            else write_blob(self.context, key, _empty(algorithm))
        )
        version = self.commit_written(request, ref, written, headers, meta, acl, conditions)
        doc = (
            xml.Doc("CopyObjectResult")
            .leaf("LastModified", version.created_at)
            .leaf("ETag", quoted(written.etag))
        )
        if written.algorithm and written.checksum is not None:
            doc.leaf("ChecksumType", "FULL_OBJECT")
            doc.leaf(f"Checksum{written.algorithm}", _b64(written.checksum))
        extra = [("x-amz-server-side-encryption", "AES256")]
        if source.version_id != "null":
            extra.append(("x-amz-copy-source-version-id", source.version_id))
        if version.version_id != "null":
            extra.append(("x-amz-version-id", version.version_id))
        return self.ok_xml(request, doc.bytes(), extra=extra)

    # ---- reading objects -------------------------------------------------------------------

    def get_object(self, request: Request) -> int:
        head = request.ex.method == "HEAD"
        request.operation = "HeadObject" if head else "GetObject"
        assert request.bucket is not None
        assert request.key is not None
        version_id = request.query.get("versionId") or None
        name = request.bucket
        ref = self.bucket_ref(name)
        request.tenant_id = ref.tenant_id
        check_region(request, ref.region_code)
        key = request.key
        # Authorise before saying whether the key exists: the object's own ACL may be what
        # allows the read, so it is looked up first, and a refusal hides whether it was there.
        try:
            stored = self.read_unit(lambda s: stored_version(s, self.context, ref, key, version_id))
        except StoreError:
            self.allow(request, ref, READ)
            raise
        self.allow(request, ref, READ, object_acl=stored.acl)
        if stored.is_delete_marker:
            if version_id is not None:
                raise MethodNotAllowed(
                    "The specified method is not allowed against this resource.",
                    delete_marker=True,
                    version_id=stored.version_id,
                )
            raise NoSuchKey(
                "The specified key does not exist.",
                delete_marker=True,
                version_id=stored.version_id,
            )
        try:
            check_read_conditions(request.headers, stored.etag, stored.last_modified)
        except NotModified as error:
            error.extra["etag"] = stored.etag
            raise
        for name_ in OVERRIDES:
            if name_ in request.query and request.caller is None:
                raise InvalidRequest(
                    "Request specific response headers cannot be used for anonymous GET requests."
                )
        status, start, end = 200, 0, stored.size - 1
        headers = self.common(request)
        part = request.query.get("partNumber")
        if part is not None:
            number = multipart.check_part_number(part)
            if stored.parts_count:
                if number > stored.parts_count:
                    raise InvalidPartNumber("The requested partnumber is not satisfiable")
                segment = stored.segments[number - 1]
                start, end = segment.offset, segment.offset + segment.size - 1
            elif number != 1:
                raise InvalidPartNumber("The requested partnumber is not satisfiable")
            if stored.parts_count:
                headers.append(("x-amz-mp-parts-count", str(stored.parts_count)))
                status = 206
                headers.append(("Content-Range", f"bytes {start}-{end}/{stored.size}"))
        range_header = request.header("range")
        if range_header and part is None and stored.size >= 0:
            chosen = None if stored.size == 0 else parse_range(range_header, stored.size)
            if chosen is not None:
                start, end = chosen
                status = 206
                headers.append(("Content-Range", f"bytes {start}-{end}/{stored.size}"))
        length = max(0, end - start + 1)
        headers.extend(
            self.object_answer_headers(request, stored, whole=status == 200 and part is None)
        )
        headers.append(("Content-Length", str(length)))
        ex = request.ex
        if head or length == 0:
            ex.respond(status, headers)
            return status
        pieces = read_range(self.context, stored, start, end)
        first = next(pieces, b"")  # the first segment authenticated before the answer starts
        ex.start(status, headers, first)
        sent = len(first)
        try:
            for batch in batched(pieces, SEND_BYTES):
                ex.send(batch)
                sent += len(batch)
        except Corrupted:
            log.error("s3: %s/%s is damaged; the read was cut", stored.bucket, stored.key)
            ex.abort_connection()
            return 500
        if sent != length:
            ex.abort_connection()
            return 500
        return status

    def object_answer_headers(
        self, request: Request, stored: StoredObject, *, whole: bool
    ) -> list[tuple[str, str]]:
        headers = [
            ("ETag", quoted(stored.etag)),
            ("Last-Modified", http_date(stored.last_modified)),
            ("Accept-Ranges", "bytes"),
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-storage-class", "STANDARD"),
        ]
        names = {
            "content-type": "Content-Type",
            "content-encoding": "Content-Encoding",
            "content-disposition": "Content-Disposition",
            "content-language": "Content-Language",
            "cache-control": "Cache-Control",
            "expires": "Expires",
        }
        overrides = {OVERRIDES[n]: v for n, v in request.query.items() if n in OVERRIDES}
        for stored_name, header in names.items():
            value = overrides.get(header, stored.headers.get(stored_name))
            if value is not None:
                headers.append((header, _header_safe(value)))
        for name, value in stored.meta.items():
            headers.append((f"x-amz-meta-{name}", _header_safe(value)))
        if stored.version_id != "null":
            headers.append(("x-amz-version-id", stored.version_id))
        if (
            (request.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
            and stored.checksum_algorithm
            and stored.checksum_value
            and whole
        ):
            headers.append(
                (checksums.header_name(stored.checksum_algorithm), stored.checksum_value)
            )
            headers.append(("x-amz-checksum-type", stored.checksum_type or "FULL_OBJECT"))
        if stored.parts_count and "x-amz-mp-parts-count" not in dict(headers):
            pass
        return headers

    def get_attributes(self, request: Request) -> int:
        request.operation = "GetObjectAttributes"
        ref = self._bucket_for(request, READ)
        assert request.key is not None
        version_id = request.query.get("versionId") or None
        key = request.key
        version = self.read_unit(lambda s: find_version(s, ref, key, version_id))
        refuse_delete_marker(version, by_id=version_id is not None)
        wanted = {
            a.strip()
            for a in (request.header("x-amz-object-attributes") or "").split(",")
            if a.strip()
        }
        known = {"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}
        if not wanted or not wanted <= known:
            raise InvalidArgument("Invalid attribute name specified.")
        stored = self.read_unit(lambda s: stored_version(s, self.context, ref, key, version_id))
        check_read_conditions(request.headers, stored.etag, stored.last_modified)
        doc = xml.Doc("GetObjectAttributesResponse")
        if "ETag" in wanted:
            doc.leaf("ETag", stored.etag)
        if "Checksum" in wanted and stored.checksum_algorithm and stored.checksum_value:
            doc.open("Checksum").leaf(f"Checksum{stored.checksum_algorithm}", stored.checksum_value)
            doc.leaf("ChecksumType", stored.checksum_type or "FULL_OBJECT").close()
        if "ObjectParts" in wanted and stored.parts_count:
            raw_max = request.header("x-amz-max-parts") or "1000"
            raw_marker = request.header("x-amz-part-number-marker") or "0"
            if not (_count(raw_max) and _count(raw_marker)):
                raise InvalidArgument("The part paging headers are not valid.")
            max_parts, marker = min(int(raw_max), 1000), int(raw_marker)
            parts = [s for s in stored.segments if s.number > marker]
            shown = parts[:max_parts]
            doc.open("ObjectParts").leaf("PartsCount", stored.parts_count)
            doc.leaf("PartNumberMarker", marker)
            doc.leaf("NextPartNumberMarker", shown[-1].number if shown else marker)
            doc.leaf("MaxParts", max_parts).leaf("IsTruncated", len(parts) > max_parts)
            for segment in shown:
                doc.open("Part").leaf("PartNumber", segment.number).leaf("Size", segment.size)
                if stored.checksum_algorithm and segment.checksum:
                    doc.leaf(f"Checksum{stored.checksum_algorithm}", segment.checksum)
                doc.close()
            doc.close()
        if "StorageClass" in wanted:
            doc.leaf("StorageClass", "STANDARD")
        if "ObjectSize" in wanted:
            doc.leaf("ObjectSize", stored.size)
        extra = [("Last-Modified", http_date(stored.last_modified))]
        if stored.version_id != "null":
            extra.append(("x-amz-version-id", stored.version_id))
        return self.ok_xml(request, doc.bytes(), extra=extra)

    def get_object_tagging(self, request: Request) -> int:
        """GetObjectTagging: Store keeps no tags, so an object's tag set is empty (the AWS CLI
        v2 reads it to copy an object's tags in a multipart copy)."""
        request.operation = "GetObjectTagging"
        ref = self._bucket_for(request, READ)
        assert request.key is not None
        key, version_id = request.key, request.query.get("versionId") or None
        version = self.read_unit(lambda s: find_version(s, ref, key, version_id))
        refuse_delete_marker(version, by_id=version_id is not None)
        doc = xml.Doc("Tagging").open("TagSet").close()
        extra = [("x-amz-version-id", version.version_id)] if version.version_id != "null" else []
        return self.ok_xml(request, doc.bytes(), extra=extra)

    def get_object_acl(self, request: Request) -> int:
        request.operation = "GetObjectAcl"
        ref = self._bucket_for(request, READ)
        assert request.key is not None
        key, version_id = request.key, request.query.get("versionId") or None
        version = self.read_unit(lambda s: find_version(s, ref, key, version_id))
        refuse_delete_marker(version, by_id=version_id is not None)
        return self.ok_xml(request, self.acl_document(request, ref, version.acl))

    def put_object_acl(self, request: Request) -> int:
        request.operation = "PutObjectAcl"
        ref = self._bucket_for(request, WRITE, by_acl=False)
        assert request.key is not None
        acl = self.canned_from_request(request)
        key, version_id = request.key, request.query.get("versionId") or None

        def work(session: Session) -> None:
            version = find_version(session, ref, key, version_id)
            refuse_delete_marker(version, by_id=version_id is not None)
            version.acl = acl

        self.write_unit(work)
        return self.ok_empty(request)

    # ---- deleting --------------------------------------------------------------------------

    def delete_object(self, request: Request) -> int:
        request.operation = "DeleteObject"
        ref = self._bucket_for(request, WRITE)
        assert request.key is not None
        key, version_id = request.key, request.query.get("versionId") or None
        if_match = request.header("if-match")
        owner = request.caller.actor.user_id if request.caller else None
        deleted = self.write_unit(
            lambda s: delete_object(
                session=s,
                bucket=self.fresh(s, ref),
                key=key,
                version_id=version_id,
                owner_id=owner,
                if_match=if_match,
            )
        )
        self.context_collect_soon()
        extra: list[tuple[str, str]] = []
        if deleted.delete_marker:
            extra.append(("x-amz-delete-marker", "true"))
        shown = deleted.marker_version_id or deleted.version_id
        if shown:
            extra.append(("x-amz-version-id", shown))
        return self.ok_empty(request, 204, extra)

    def context_collect_soon(self) -> None:
        """Garbage is deleted by ``store.collect_garbage`` after a grace period (reads in
        flight finish first)."""

    def delete_objects(self, request: Request) -> int:
        request.operation = "DeleteObjects"
        ref = self._bucket_for(request, WRITE, per_key=True)
        raw = self.small_body(request)
        root = xml.parse(raw, "Delete")
        quiet = (xml.text_of(root, "Quiet") or "").strip().lower() == "true"
        items: list[tuple[str, str | None, str | None]] = []
        for element in xml.children(root, "Object"):
            key = xml.text_of(element, "Key")
            if key is None:
                raise MalformedXML("The XML you provided was not well-formed or did not validate.")
            items.append(
                (key, xml.text_of(element, "VersionId") or None, xml.text_of(element, "ETag"))
            )
        if not items or len(items) > 1000:
            raise MalformedXML("The XML you provided was not well-formed or did not validate.")
        owner = request.caller.actor.user_id if request.caller else None
        caller = request.caller

        def work(session: Session) -> list[tuple[str, Any]]:
            results: list[tuple[str, Any]] = []
            fresh = self.fresh(session, ref)
            for key, version_id, etag in items:
                try:
                    check_key(key)
                    if caller is not None and not caller.allows(ref.name, key, write=True):
                        raise AccessDenied("Access Denied")
                    with session.begin_nested():
                        results.append(
                            (
                                "ok",
                                delete_object(
                                    session=session,
                                    bucket=fresh,
                                    key=key,
                                    version_id=version_id,
                                    owner_id=owner,
                                    if_match=etag,
                                ),
                            )
                        )
                except StoreError as error:
                    results.append(("error", (key, version_id, error)))
            return results

        results = self.write_unit(work)
        doc = xml.Doc("DeleteResult")
        for kind, value in results:
            if kind == "ok":
                if quiet:
                    continue
                doc.open("Deleted").leaf("Key", value.key)
                if value.version_id:
                    doc.leaf("VersionId", value.version_id)
                if value.delete_marker:
                    doc.leaf("DeleteMarker", True)
                    if value.marker_version_id:
                        doc.leaf("DeleteMarkerVersionId", value.marker_version_id)
                doc.close()
            else:
                key, version_id, error = value
                doc.open("Error").leaf("Key", key)
                if version_id:
                    doc.leaf("VersionId", version_id)
                doc.leaf("Code", error.s3_code).leaf("Message", error.detail).close()
        return self.ok_xml(request, doc.bytes())

    # ---- multipart -------------------------------------------------------------------------

    def create_upload(self, request: Request) -> int:
        request.operation = "CreateMultipartUpload"
        ref = self._bucket_for(request, WRITE)
        assert request.key is not None
        headers, meta, acl = self.object_headers(request)
        headers.setdefault("content-type", "binary/octet-stream")
        algorithm = request.header("x-amz-checksum-algorithm")
        if algorithm is not None:
            algorithm = algorithm.upper()
            if algorithm not in checksums.ALGORITHMS:
                raise InvalidRequest("Checksum algorithm provided is unsupported.")
        kind = request.header("x-amz-checksum-type")
        kind = kind.upper() if kind else None
        caller = request.caller
        key = request.key
        drain(request)
        upload = self.write_unit(
            lambda s: multipart.create_upload(
                session=s,
                bucket=ref,
                key=key,
                headers=headers,
                meta=meta,
                acl=acl,
                algorithm=algorithm,
                checksum_type=kind,
                initiator_id=caller.actor.user_id if caller else None,
                initiator=caller.actor.name if caller else "anonymous",
            )
        )
        doc = xml.Doc("InitiateMultipartUploadResult").leaf("Bucket", ref.name).leaf("Key", key)
        doc.leaf("UploadId", upload.id)
        extra = [("x-amz-server-side-encryption", "AES256")]
        if upload.checksum_algorithm:
            extra.append(("x-amz-checksum-algorithm", upload.checksum_algorithm))
            extra.append(("x-amz-checksum-type", upload.checksum_type or "COMPOSITE"))
        return self.ok_xml(request, doc.bytes(), extra=extra)

    def _upload(self, request: Request, ref: BucketRef) -> Any:
        assert request.key is not None
        key, upload_id = request.key, request.query.get("uploadId", "")
        return self.read_unit(lambda s: multipart.find_upload(s, ref, key, upload_id))

    def upload_part(self, request: Request) -> int:
        request.operation = "UploadPart"
        ref = self._bucket_for(request, WRITE)
        number = multipart.check_part_number(request.query.get("partNumber"))
        upload = self._upload(request, ref)
        incoming = body(request, max_bytes=self.settings.max_put_bytes)
        key = self.prepare_write(ref, incoming.incoming.length)
        if upload.checksum_algorithm and incoming.incoming.algorithm is None:
            incoming.incoming.algorithm = upload.checksum_algorithm
        written = write_blob(self.context, key, incoming.incoming)
        upload_id = upload.id
        self.commit_or_discard(
            [written.blob_id],
            lambda s: multipart.store_part(
                session=s,
                bucket=ref,
                upload=multipart.find_upload(s, ref, upload.key, upload_id, lock=True),
                number=number,
                written=written,
            ),
        )
        extra = [("ETag", quoted(written.etag)), ("x-amz-server-side-encryption", "AES256")]
        if written.algorithm and written.checksum is not None:
            extra.append((checksums.header_name(written.algorithm), _b64(written.checksum) or ""))
        return self.ok_empty(request, extra=extra)

    def upload_part_copy(self, request: Request) -> int:
        request.operation = "UploadPartCopy"
        ref = self._bucket_for(request, WRITE)
        number = multipart.check_part_number(request.query.get("partNumber"))
        upload = self._upload(request, ref)
        _src, source = self.copy_source(request)
        start, end = 0, source.size - 1
        wanted = request.header("x-amz-copy-source-range")
        if wanted is not None:
            value = wanted.strip()
            first, dash, last = value.removeprefix("bytes=").partition("-")
            if (
                not value.startswith("bytes=")
                or not dash
                or not (first.isascii() and first.isdigit())
                or not (last.isascii() and last.isdigit())
            ):
                raise InvalidArgument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
                )
            start, end = int(first), int(last)
            if end < start or end >= source.size:
                raise InvalidArgument(
                    "Range specified is not valid for source object of size: %(size)s",
                    params={"size": source.size},
                )
        if end - start + 1 > self.settings.max_put_bytes:
            raise InvalidArgument("The specified copy range is larger than a part may be.")
        key = self.prepare_write(ref, max(0, end - start + 1))
        drain(request)
        algorithm = upload.checksum_algorithm
        written = (
            copy_into_blob(self.context, key, source, start, end, algorithm)
            if source.size
            else write_blob(self.context, key, _empty(algorithm))
        )
        upload_id = upload.id
        part = self.commit_or_discard(
            [written.blob_id],
            lambda s: multipart.store_part(
                session=s,
                bucket=ref,
                upload=multipart.find_upload(s, ref, upload.key, upload_id, lock=True),
                number=number,
                written=written,
            ),
        )
        doc = (
            xml.Doc("CopyPartResult")
            .leaf("LastModified", part.created_at)
            .leaf("ETag", quoted(written.etag))
        )
        if written.algorithm and written.checksum is not None:
            doc.leaf(f"Checksum{written.algorithm}", _b64(written.checksum))
        extra = (
            []
            if source.version_id == "null"
            else [("x-amz-copy-source-version-id", source.version_id)]
        )
        return self.ok_xml(request, doc.bytes(), extra=extra)

    def complete_upload(self, request: Request) -> int:
        request.operation = "CompleteMultipartUpload"
        ref = self._bucket_for(request, WRITE)
        upload = self._upload(request, ref)
        root = xml.parse(self.small_body(request), "CompleteMultipartUpload")
        asked: list[multipart.Asked] = []
        algorithm = upload.checksum_algorithm
        for element in xml.children(root, "Part"):
            number_text = xml.text_of(element, "PartNumber") or ""
            etag = xml.text_of(element, "ETag")
            if not _count(number_text.strip(), 5) or etag is None:
                raise MalformedXML("The XML you provided was not well-formed or did not validate.")
            checksum = xml.text_of(element, f"Checksum{algorithm}") if algorithm else None
            asked.append(multipart.Asked(int(number_text), etag, checksum))
        if len(asked) > multipart.MAX_PARTS:
            raise InvalidArgument("Too many parts.")
        conditions = self.conditions(request)
        owner = request.caller.actor.user_id if request.caller else None
        expected = request.header(checksums.header_name(algorithm)) if algorithm else None
        expected_type = request.header("x-amz-checksum-type")
        upload_id = upload.id
        version = self.write_unit(
            lambda s: multipart.complete_upload(
                session=s,
                bucket=self.fresh(s, ref),
                upload=multipart.find_upload(s, ref, upload.key, upload_id, lock=True),
                asked=asked,
                min_part_bytes=self.settings.min_part_bytes,
                conditions=conditions,
                owner_id=owner,
                expected_checksum=expected,
                expected_type=expected_type.upper() if expected_type else None,
            )
        )
        doc = xml.Doc("CompleteMultipartUploadResult")
        doc.leaf("Location", f"/{ref.name}/{quote(upload.key)}").leaf("Bucket", ref.name)
        doc.leaf("Key", upload.key).leaf("ETag", quoted(version.etag))
        if version.checksum_algorithm and version.checksum_value:
            doc.leaf(f"Checksum{version.checksum_algorithm}", version.checksum_value)
            doc.leaf("ChecksumType", version.checksum_type)
        extra = [("x-amz-server-side-encryption", "AES256")]
        if version.version_id != "null":
            extra.append(("x-amz-version-id", version.version_id))
        return self.ok_xml(request, doc.bytes(), extra=extra)

    def abort_upload(self, request: Request) -> int:
        request.operation = "AbortMultipartUpload"
        ref = self._bucket_for(request, WRITE)
        upload = self._upload(request, ref)
        upload_id = upload.id
        self.write_unit(
            lambda s: multipart.abort_upload(
                session=s,
                bucket=ref,
                upload=multipart.find_upload(s, ref, upload.key, upload_id, lock=True),
            )
        )
        return self.ok_empty(request, 204)

    def list_parts(self, request: Request) -> int:
        request.operation = "ListParts"
        ref = self._bucket_for(request, READ)
        upload = self._upload(request, ref)
        raw_max = request.query.get("max-parts", "1000")
        raw_marker = request.query.get("part-number-marker", "0")
        if (
            not (raw_max.isascii() and raw_max.isdigit())
            or not (raw_marker.isascii() and raw_marker.isdigit())
            or len(raw_max) > 9
            or len(raw_marker) > 9
        ):
            raise InvalidArgument("The part paging parameters are not valid.")
        max_parts, marker = min(int(raw_max), 1000), int(raw_marker)
        parts, truncated = self.read_unit(
            lambda s: multipart.list_parts(s, upload, after=marker, max_parts=max_parts)
        )
        doc = xml.Doc("ListPartsResult").leaf("Bucket", ref.name).leaf("Key", upload.key)
        doc.leaf("UploadId", upload.id).leaf("PartNumberMarker", marker)
        doc.leaf("NextPartNumberMarker", parts[-1].number if parts else marker)
        doc.leaf("MaxParts", max_parts).leaf("IsTruncated", truncated)
        doc.open("Initiator").leaf("ID", upload.initiator).leaf(
            "DisplayName", upload.initiator
        ).close()
        xml.owner(doc, ref.tenant_id.hex, ref.name)
        doc.leaf("StorageClass", "STANDARD")
        if upload.checksum_algorithm:
            doc.leaf("ChecksumAlgorithm", upload.checksum_algorithm)
            doc.leaf("ChecksumType", upload.checksum_type)
        for part in parts:
            doc.open("Part").leaf("PartNumber", part.number).leaf("LastModified", part.created_at)
            doc.leaf("ETag", quoted(part.etag)).leaf("Size", part.size)
            if upload.checksum_algorithm and part.checksum_value:
                doc.leaf(f"Checksum{upload.checksum_algorithm}", part.checksum_value)
            doc.close()
        return self.ok_xml(request, doc.bytes())

    def list_uploads(self, request: Request) -> int:
        request.operation = "ListMultipartUploads"
        ref = self._bucket_for(request, READ)
        query = request.query
        prefix = query.get("prefix", "")
        self._within_prefixes(request, prefix)
        raw_max = query.get("max-uploads", "1000")
        if not (raw_max.isascii() and raw_max.isdigit()) or len(raw_max) > 9:
            raise InvalidArgument("The max-uploads parameter is not valid.")
        max_uploads = min(int(raw_max), 1000)
        key_marker = query.get("key-marker") or None
        uploads, truncated = self.read_unit(
            lambda s: multipart.list_uploads(
                s,
                ref,
                prefix=prefix,
                key_marker=key_marker,
                upload_marker=query.get("upload-id-marker"),
                max_uploads=max_uploads,
            )
        )
        doc = xml.Doc("ListMultipartUploadsResult").leaf("Bucket", ref.name)
        doc.leaf("KeyMarker", key_marker or "").leaf(
            "UploadIdMarker", query.get("upload-id-marker", "")
        )
        if truncated and uploads:
            doc.leaf("NextKeyMarker", uploads[-1].key).leaf("NextUploadIdMarker", uploads[-1].id)
        doc.leaf("Prefix", prefix).leaf("MaxUploads", max_uploads).leaf("IsTruncated", truncated)
        for upload in uploads:
            doc.open("Upload").leaf("Key", upload.key).leaf("UploadId", upload.id)
            doc.open("Initiator").leaf("ID", upload.initiator).leaf(
                "DisplayName", upload.initiator
            ).close()
            xml.owner(doc, ref.tenant_id.hex, ref.name)
            doc.leaf("StorageClass", "STANDARD").leaf("Initiated", upload.created_at)
            if upload.checksum_algorithm:
                doc.leaf("ChecksumAlgorithm", upload.checksum_algorithm)
                doc.leaf("ChecksumType", upload.checksum_type)
            doc.close()
        return self.ok_xml(request, doc.bytes())


# ---- helpers -----------------------------------------------------------------------------------


def _wrap(error: CivicloudError) -> StoreError:
    """A core error met on the S3 port, as the nearest S3 error."""
    kinds: dict[int, type[StoreError]] = {403: AccessDenied, 404: NoSuchKey, 409: OperationAborted}
    kind = StoreError if error.status >= 500 else kinds.get(error.status, InvalidRequest)
    return kind(error.message, params=error.params)


def _count(text: str, digits: int = 9) -> bool:
    """Whether ``text`` is a count as a query or header carries it: ASCII digits, not too many."""
    return text.isascii() and text.isdigit() and len(text) <= digits


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument("The continuation token provided is incorrect") from None


def _header_safe(value: str) -> str:
    """A stored value as a header line may carry it (no line breaks, Latin-1 or encoded)."""
    cleaned = value.replace("\r", " ").replace("\n", " ")
    try:
        cleaned.encode("latin-1")
    except UnicodeEncodeError:
        return quote(cleaned, safe=" !#$&'()*+,/:;=?@[]~")
    return cleaned


def _empty(algorithm: str | None) -> Any:
    from civicloud.store.objects import Incoming

    return Incoming(read=lambda _n: b"", length=0, algorithm=algorithm)


def _early_conditions(session: Session, ref: BucketRef, key: str, conditions: Conditions) -> None:
    """A conditional write that cannot succeed is refused before its bytes are read (the
    commit checks again, in its transaction)."""
    from civicloud.store.objects import check_write_conditions

    current = session.scalar(
        select(ObjectVersion).where(
            ObjectVersion.bucket_id == ref.id,
            ObjectVersion.key == key,
            ObjectVersion.is_latest.is_(True),
        )
    )
    check_write_conditions(current, conditions)


def iter_nothing() -> Iterator[bytes]:
    return iter(())


__all__ = ["S3", "UploadPart"]
