"""A bucket's objects in the console: folders with breadcrumbs, a search by name, pages, an
object's details and versions, downloads, deletes, share links, and uploads of files and
folders.

An upload is a plain multipart form (it works without script); where script runs,
``/static/store/upload.js`` sends each file on its own and shows its progress. The form's body
is larger than other forms', so its route raises the request's body limit to
``store.max_put_bytes`` before the body is read, and it holds no unit of work while the files
stream: each file is written durably and then committed in a unit of work of its own.
"""

from __future__ import annotations

from typing import Annotated, Any, BinaryIO
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from civicloud.core.actor import Actor
from civicloud.core.errors import CivicloudError, InvalidInput, NotFound
from civicloud.core.i18n import N_
from civicloud.core.roles import authenticate_session
from civicloud.store import console
from civicloud.store.context import StoreContext
from civicloud.store.errors import NoSuchKey, StoreError
from civicloud.store.models import Bucket
from civicloud.store.names import check_key
from civicloud.store.objects import delete_object, find_version, snapshot
from civicloud.store.service import BucketRef
from civicloud.store.web.buckets import bucket_url, settings_context
from civicloud.store.web.views import PREFIX, form_state, page, store_context
from civicloud.web.deps import SESSION_COOKIE, SessionDep, read_cookie, services_of
from civicloud.web.middleware import BODY_LIMIT_KEY
from civicloud.web.pages.forms import rejected_form, service_error
from civicloud.web.pages.guards import (
    ConsoleActorDep,
    FormRejected,
    LoginRequired,
    checked_form_token,
    see_other,
)
from civicloud.web.pages.once import form_token as new_form_token
from civicloud.web.pages.once import spend_form_token
from civicloud.web.pages.rendering import SECURITY_HEADERS

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_NOTHING_CHOSEN = N_("Choose one or more files, or a folder.")
_EXPIRY_HINT = N_("Choose how long the link works.")
_KEY_HINT = N_("Choose one of your access keys.")
EXPIRY_LABELS = {
    900: N_("15 minutes"),
    3600: N_("1 hour"),
    6 * 3600: N_("6 hours"),
    86400: N_("1 day"),
    3 * 86400: N_("3 days"),
    7 * 86400: N_("7 days"),
}
#: Pages that run the upload script: scripts of this site only, as Pay's paying pages.
SCRIPT_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "script-src 'none'", "script-src 'self'"
)


def object_url(
    bucket: str, key: str, version_id: str | None = None, *, what: str = "object"
) -> str:
    """The address of an object's page (or its download, ``what="download"``)."""
    query = {"key": key}
    if version_id:
        query["version_id"] = version_id
    return f"{PREFIX}/buckets/{quote(bucket, safe='')}/{what}?{urlencode(query)}"


def bucket_page_response(
    request: Request,
    session: Session,
    actor: Actor,
    name: str,
    *,
    prefix: str = "",
    search: str = "",
    after: str | None = None,
    status: int = 200,
    settings_form: dict[str, Any] | None = None,
    upload_form: dict[str, Any] | None = None,
) -> Response:
    """A bucket's page: its settings, one folder's contents and the upload form."""
    ref = console.visible_bucket(session=session, actor=actor, name=name)
    bucket = session.get(Bucket, ref.id)
    if bucket is None:
        raise NotFound("no such bucket", resource="bucket")
    context = settings_context(request, session, actor, bucket)
    if settings_form is not None:
        context["settings_form"] = settings_form
    may_list = actor.can(console.OBJECT_READ, ref.tenant_path)
    folder = None
    search_error = None
    if may_list:
        try:
            folder = console.browse(
                session=session, bucket=ref, prefix=prefix, search=search, start_after=after
            )
        except InvalidInput:
            search_error = N_("The prefix is not valid.")
    context.update(
        store_tab="buckets",
        ref=ref,
        prefix=prefix,
        search=search,
        search_error=search_error,
        crumbs=console.breadcrumbs(prefix),
        folder=folder,
        may_list=may_list,
        may_write=actor.can(console.OBJECT_WRITE, ref.tenant_path),
        max_put_bytes=store_context(request).settings.max_put_bytes,
        upload_form=upload_form or form_state({"prefix": prefix}),
        bucket_url=bucket_url,
        object_url=object_url,
        next_url=bucket_url(ref.name, prefix=prefix, q=search, after=folder.next_after)
        if folder and folder.next_after
        else None,
        first_url=bucket_url(ref.name, prefix=prefix, q=search) if after else None,
    )
    response = page(request, "store/console/bucket.html", context, status_code=status)
    if context["may_write"]:
        response.headers["Content-Security-Policy"] = SCRIPT_CSP
    return response


@router.get("/buckets/{bucket}", name="store.page.bucket")
def bucket_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    q: Annotated[str, Query(max_length=1024)] = "",
    after: Annotated[str, Query(max_length=1024)] = "",
) -> Response:
    """A bucket: its settings and one folder's objects, searchable by name, page by page."""
    return bucket_page_response(
        request, session, actor, bucket, prefix=prefix, search=q, after=after or None
    )


# --- one object --------------------------------------------------------------------------------


def _object_context(
    request: Request, session: Session, actor: Actor, bucket: str, key: str, version_id: str
) -> dict[str, Any]:
    ref = console.visible_bucket(
        session=session, actor=actor, name=bucket, permission=console.OBJECT_READ
    )
    try:
        version = find_version(session, ref, key, version_id or None)
    except (NoSuchKey, StoreError, InvalidInput) as exc:
        raise NotFound("no such object", resource="object") from exc
    versions = console.versions_of(session=session, bucket=ref, key=key)
    prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    keys = console.own_keys(session=session, actor=actor)
    return {
        "store_tab": "buckets",
        "ref": ref,
        "key": key,
        "version": version,
        "versions": versions,
        "prefix": prefix,
        "crumbs": console.breadcrumbs(prefix),
        "may_write": actor.can(console.OBJECT_WRITE, ref.tenant_path),
        "bucket_url": bucket_url,
        "object_url": object_url,
        "own_keys": keys,
        "expiries": [(s, EXPIRY_LABELS[s]) for s in console.SHARE_EXPIRIES],
        "share_form": form_state({"expires": "3600"}),
        "link": None,
    }


@router.get("/buckets/{bucket}/object", name="store.page.object")
def object_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    key: Annotated[str, Query(max_length=1024)] = "",
    version_id: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """An object: size, ETag, type, last modified, metadata, checksum, and its versions."""
    context = _object_context(request, session, actor, bucket, key, version_id)
    return page(request, "store/console/object.html", context)


@router.get("/buckets/{bucket}/download", name="store.page.download")
def download(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    key: Annotated[str, Query(max_length=1024)] = "",
    version_id: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """Download an object (or one of its versions) as a file."""
    ref = console.visible_bucket(
        session=session, actor=actor, name=bucket, permission=console.OBJECT_READ
    )
    context = store_context(request)
    try:
        version = find_version(session, ref, key, version_id or None)
    except (StoreError, InvalidInput) as exc:
        raise NotFound("no such object", resource="object") from exc
    if version.is_delete_marker:
        raise NotFound("no such object", resource="object")
    stored = snapshot(session, context, ref, version)
    return StreamingResponse(
        console.downloaded(context, stored)(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": console.content_disposition(key),
            "Content-Length": str(stored.size),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "ETag": f'"{stored.etag}"',
        },
    )


@router.post("/buckets/{bucket}/object/delete", name="store.page.object_delete")
def delete_object_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    object_key: Annotated[str, Form(max_length=1024)] = "",
    version_id: Annotated[str, Form(max_length=100)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Delete an object (or one version of it for good), after a confirmation."""
    ref = console.visible_bucket(
        session=session, actor=actor, name=bucket, permission=console.OBJECT_WRITE
    )
    if confirm == "yes":
        # Spent first: a confirmation sent again says so, even once the object is gone.
        spend_form_token(session, request, form_token)
        return _delete(session, actor, ref, object_key, version_id)
    _object_context(request, session, actor, bucket, object_key, version_id)
    if version_id:
        lead = N_("This version is removed for good; the other versions stay.")
    elif ref.versioning == "enabled":
        lead = N_("Versioning is on: a delete marker hides the object, its versions stay.")
    else:
        lead = N_("The object is removed for good.")
    return page(
        request,
        "store/console/confirm.html",
        {
            "store_tab": "buckets",
            "title": N_("Delete %(key)s?"),
            "title_params": {"key": object_key},
            "facts": [
                (N_("Bucket"), ref.name),
                (N_("Key"), object_key),
                *([(N_("Version"), version_id)] if version_id else []),
            ],
            "lead": lead,
            "action": f"{bucket_url(ref.name)}/object/delete",
            "button": N_("Delete"),
            "cancel": object_url(ref.name, object_key, version_id or None),
            "hidden": [("object_key", object_key), ("version_id", version_id)],
            "token": new_form_token(request),
        },
    )


def _delete(session: Session, actor: Actor, ref: Any, object_key: str, version_id: str) -> Response:
    try:
        delete_object(
            session=session,
            bucket=ref,
            key=check_key(object_key),
            version_id=version_id or None,
            owner_id=actor.user_id,
        )
    except (StoreError, InvalidInput) as exc:
        raise NotFound("no such object", resource="object") from exc
    prefix = object_key.rsplit("/", 1)[0] + "/" if "/" in object_key else ""
    if version_id:
        remaining = console.versions_of(session=session, bucket=ref, key=object_key)
        if remaining:
            return see_other(object_url(ref.name, object_key) + "&done=version_deleted")
    return see_other(bucket_url(ref.name, prefix=prefix, done="object_deleted"))


@router.post("/buckets/{bucket}/share", name="store.page.share")
def share(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    object_key: Annotated[str, Form(max_length=1024)] = "",
    version_id: Annotated[str, Form(max_length=100)] = "",
    access_key: Annotated[str, Form(max_length=40)] = "",
    expires: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A link that downloads the object without signing in, until it expires."""
    context = _object_context(request, session, actor, bucket, object_key, version_id)
    values = {"access_key": access_key, "expires": expires}
    errors: dict[str, str] = {}
    seconds = int(expires) if (expires.isascii() and expires.isdigit()) and len(expires) < 8 else 0
    if seconds not in console.SHARE_EXPIRIES:
        errors["expires"] = _EXPIRY_HINT
    if access_key not in {k.access_key_id for k in context["own_keys"]}:
        errors["access_key"] = _KEY_HINT
    if errors:
        context["share_form"] = rejected_form(values, errors)
        raise FormRejected(page(request, "store/console/object.html", context, status_code=422))
    try:
        context["link"] = console.share_link(
            session=session,
            actor=actor,
            context=store_context(request),
            bucket=context["ref"],
            key=object_key,
            access_key_id=access_key,
            expires_seconds=min(seconds, store_context(request).settings.max_presign_seconds),
            version_id=version_id or None,
        )
    except CivicloudError as exc:
        context["share_form"] = rejected_form(values, {}, service_error(exc))
        raise FormRejected(
            page(request, "store/console/object.html", context, status_code=422)
        ) from exc
    context["share_form"] = form_state(values)
    context["link_expires"] = EXPIRY_LABELS[seconds]
    return page(request, "store/console/object.html", context)


# --- uploads -----------------------------------------------------------------------------------


async def _raise_body_limit(request: Request) -> None:
    """Let this request's body be as large as one upload may be (``store.max_put_bytes``)."""
    request.scope[BODY_LIMIT_KEY] = store_context(request).settings.max_put_bytes + (1 << 20)


async def _upload_actor(
    request: Request,
    _limit: Annotated[None, Depends(_raise_body_limit)],
    _csrf: Annotated[None, Depends(checked_form_token)],
) -> Actor:
    """The signed-in uploader, resolved in a short read of its own (no unit of work is held
    while the files stream in and are stored)."""
    cookie = read_cookie(request, SESSION_COOKIE)
    services = services_of(request)
    principal = None
    if cookie:
        principal = services.principals.get("session", cookie)
        if principal is None:

            def lookup() -> Any:
                with services.db.unit_of_work(write=False) as session:
                    return authenticate_session(
                        session=session, token=cookie, cache=services.principals
                    )

            principal = await run_in_threadpool(lookup)
    if principal is None:
        raise LoginRequired("/console")
    request.state.actor = principal.actor
    actor: Actor = principal.actor
    return actor


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.post("/buckets/{bucket}/upload", name="store.page.upload")
async def upload(
    request: Request, actor: Annotated[Actor, Depends(_upload_actor)], bucket: str
) -> Response:
    """Upload files, or a folder with its sub-folders, into the folder shown."""
    services = services_of(request)

    def find() -> Any:
        with services.db.unit_of_work(write=False) as session:
            return console.visible_bucket(session=session, actor=actor, name=bucket)

    form = await request.form()
    try:
        ref = await run_in_threadpool(find)
        return await _store_files(request, actor, bucket, ref, form)
    finally:
        await form.close()  # the spooled files, now stored or refused


def _upload_one(
    context: StoreContext,
    actor: Actor,
    ref: BucketRef,
    key: str,
    stream: BinaryIO,
    content_type: str,
    length: int | None,
) -> console.Uploaded:
    """One file: checked in a read unit, streamed into a durable blob with no transaction open,
    then committed in a write unit of its own; the blob goes again if the commit fails."""
    with context.db.unit_of_work(write=False) as session:
        data_key = console.prepare_upload(
            session=session, context=context, actor=actor, bucket=ref, key=key, length=length
        )
    written = console.receive_upload(context, data_key, stream)
    try:
        return context.db.run(
            lambda session: console.commit_upload(
                session=session,
                actor=actor,
                bucket=ref,
                key=key,
                written=written,
                content_type=content_type,
            ),
            attempts=3,
        )
    except BaseException:
        context.backend.delete(written.blob_id)
        raise


async def _store_files(
    request: Request, actor: Actor, bucket: str, ref: Any, form: Any
) -> Response:
    context = store_context(request)
    prefix_value = form.get("prefix")
    prefix = prefix_value if isinstance(prefix_value, str) else ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    paths = [p for p in form.getlist("paths") if isinstance(p, str)]
    if not files:
        return await _upload_refused(request, actor, bucket, prefix, {"files": _NOTHING_CHOSEN})
    done: list[console.Uploaded] = []
    for index, upload_file in enumerate(files):
        # A folder's files carry their relative path as their name (or, from the script, in
        # ``paths``), which becomes the key below the folder shown.
        relative = paths[index] if index < len(paths) and paths[index] else upload_file.filename
        try:
            key = console.upload_key(prefix, relative or "")
            done.append(
                await run_in_threadpool(
                    _upload_one,
                    context,
                    actor,
                    ref,
                    key,
                    upload_file.file,
                    upload_file.content_type or "",
                    upload_file.size,
                )
            )
        except CivicloudError as exc:
            if _wants_json(request):
                return JSONResponse(
                    {"uploaded": [u.key for u in done], "error": exc.detail},
                    status_code=exc.status if exc.status >= 400 else 422,
                )
            return await _upload_refused(
                request, actor, bucket, prefix, {}, service_error(exc), done, exc.status
            )
    if _wants_json(request):
        return JSONResponse(
            {"uploaded": [{"key": u.key, "size": u.size, "etag": u.etag} for u in done]}
        )
    return see_other(bucket_url(ref.name, prefix=prefix, done="uploaded"))


async def _upload_refused(
    request: Request,
    actor: Actor,
    bucket: str,
    prefix: str,
    errors: dict[str, str],
    summary: dict[str, Any] | None = None,
    done: list[console.Uploaded] | None = None,
    status: int = 422,
) -> Response:
    services = services_of(request)

    def render() -> Response:
        with services.db.unit_of_work(write=False) as session:
            form = rejected_form({"prefix": prefix}, errors, summary)
            form["uploaded"] = [u.key for u in done or []]
            return bucket_page_response(
                request,
                session,
                actor,
                bucket,
                prefix=prefix,
                upload_form=form,
                status=status if status >= 400 else 422,
            )

    return await run_in_threadpool(render)
