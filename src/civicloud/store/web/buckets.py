"""Buckets in the console: the list, creating one, and changing or deleting one.

The services authorise and audit every change; the pages only offer what the reader may do. A
refused form is answered with its page again, 422 (``FormRejected``: the unit of work rolls
back); a change with a redirect.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.errors import CivicloudError, InvalidInput
from civicloud.core.i18n import N_
from civicloud.store import console, service
from civicloud.store.errors import BucketNotEmpty, StoreConflict
from civicloud.store.models import CANNED_ACLS, Bucket
from civicloud.store.names import check_bucket_name
from civicloud.store.web import lists as store_lists
from civicloud.store.web.views import (
    PREFIX,
    form_state,
    page,
    parse_count,
    parse_quota_gib,
    store_context,
)
from civicloud.web import lists
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import rejected_form, service_error
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.once import spend_form_token
from civicloud.web.pages.rendering import holds_somewhere, page_language

router = APIRouter(prefix=PREFIX, include_in_schema=False)

NAME_HINT = N_(
    "3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or "
    "digit; unique in the whole installation."
)
_ACL_HINT = N_("Choose one of the access settings offered.")
_QUOTA_HINT = N_("Enter a size in GiB (such as 50 or 0.5), or leave it empty for no quota.")
_COUNT_HINT = N_("Enter a whole number of objects, or leave it empty for no limit.")
_STATUS_HINT = N_("Choose Enabled or Suspended.")


def bucket_url(name: str, **query: str) -> str:
    """The address of a bucket's page."""
    from urllib.parse import urlencode

    url = f"{PREFIX}/buckets/{quote(name, safe='')}"
    shown = {k: v for k, v in query.items() if v}
    return f"{url}?{urlencode(shown)}" if shown else url


def _list_context(actor: Actor) -> dict[str, Any]:
    return {
        "store_tab": "buckets",
        "not_allowed": None,
        "view": None,
        "may_create": holds_somewhere(actor, console.BUCKET_ADMIN),
        "acls": CANNED_ACLS,
        "name_hint": NAME_HINT,
        "form": form_state({"acl": "private"}),
    }


def _buckets_page(
    request: Request, session: Session, actor: Actor, context: dict[str, Any], status: int = 200
) -> Response:
    if not holds_somewhere(actor, console.BUCKET_READ):
        context["not_allowed"] = store_lists.NOT_ALLOWED["buckets"]
        return page(request, "store/console/buckets.html", context, status_code=status)
    spec = store_lists.buckets_spec(actor, page_language(request))

    def render(view: lists.ListView) -> Response:
        return page(
            request, "store/console/buckets.html", {**context, "view": view}, status_code=status
        )

    return lists.respond(request, spec, session, render)


@router.get("", name="store.page.console")
def buckets_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """The buckets you may see: size, objects, versioning, access, quota and region."""
    return _buckets_page(request, session, actor, _list_context(actor))


@router.post("/buckets", name="store.page.bucket_create")
def create_bucket(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket_name: Annotated[str, Form(max_length=100)] = "",
    acl: Annotated[str, Form(max_length=40)] = "private",
) -> Response:
    """Create a bucket in your tenant's home region."""
    name = bucket_name.strip()
    values = {"bucket_name": name, "acl": acl}
    errors: dict[str, str] = {}
    try:
        check_bucket_name(name)
    except InvalidInput:
        errors["bucket_name"] = NAME_HINT
    if acl not in CANNED_ACLS:
        errors["acl"] = _ACL_HINT
    summary = None
    if not errors:
        try:
            service.create_bucket(
                session=session,
                actor=actor,
                context=store_context(request),
                name=name,
                acl=acl,
            )
        except StoreConflict as exc:
            errors["bucket_name"] = N_("This name is taken; choose another one.")
            summary = service_error(exc)
        except CivicloudError as exc:
            summary = service_error(exc)
            status = exc.status if exc.status in (403, 404, 409) else 422
            context = _list_context(actor)
            context["form"] = rejected_form(values, errors, summary)
            raise FormRejected(_buckets_page(request, session, actor, context, status)) from exc
    if errors or summary:
        context = _list_context(actor)
        context["form"] = rejected_form(values, errors, summary)
        raise FormRejected(_buckets_page(request, session, actor, context, 422))
    return see_other(bucket_url(name, done="bucket_created"))


# --- one bucket's settings ------------------------------------------------------------------


def settings_context(
    request: Request, session: Session, actor: Actor, bucket: Bucket
) -> dict[str, Any]:
    """What a bucket's settings panel shows and offers."""
    ref = service.bucket_ref(session, bucket.name)
    return {
        "bucket": bucket,
        "may_admin": actor.can(console.BUCKET_ADMIN, ref.tenant_path),
        "may_read_bucket": actor.can(console.BUCKET_READ, ref.tenant_path),
        "acls": CANNED_ACLS,
        "settings_form": form_state(
            {
                "acl": bucket.acl,
                "status": "Enabled" if bucket.versioning != "enabled" else "Suspended",
                "quota_gb": _gib_text(bucket.quota_bytes),
                "quota_objects": "" if bucket.quota_objects is None else str(bucket.quota_objects),
            }
        ),
    }


def _gib_text(value: int | None) -> str:
    if value is None:
        return ""
    gib = value / (1 << 30)
    return f"{gib:g}"


def _settings_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    name: str,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, Any] | None = None,
    status: int = 422,
) -> FormRejected:
    from civicloud.store.web.browser import bucket_page_response

    return FormRejected(
        bucket_page_response(
            request,
            session,
            actor,
            name,
            status=status,
            settings_form=rejected_form(values, errors, summary),
        )
    )


@router.post("/buckets/{bucket}/versioning", name="store.page.bucket_versioning")
def set_versioning(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    status: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Turn a bucket's versioning on, or suspend it."""
    ref = console.visible_bucket(session=session, actor=actor, name=bucket)
    if status not in ("Enabled", "Suspended"):
        raise _settings_rejected(request, session, actor, bucket, {}, {"status": _STATUS_HINT})
    service.set_versioning(session=session, actor=actor, name=ref.name, status=status)
    return see_other(bucket_url(ref.name, done="versioning_set"))


@router.post("/buckets/{bucket}/acl", name="store.page.bucket_acl")
def set_acl(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    acl: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Give a bucket one of the canned access settings."""
    ref = console.visible_bucket(session=session, actor=actor, name=bucket)
    if acl not in CANNED_ACLS:
        raise _settings_rejected(request, session, actor, bucket, {"acl": acl}, {"acl": _ACL_HINT})
    service.set_bucket_acl(session=session, actor=actor, name=ref.name, acl=acl)
    return see_other(bucket_url(ref.name, done="acl_set"))


@router.post("/buckets/{bucket}/quota", name="store.page.bucket_quota")
def set_quota(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    quota_gb: Annotated[str, Form(max_length=30)] = "",
    quota_objects: Annotated[str, Form(max_length=30)] = "",
) -> Response:
    """Set or lift a bucket's quota (bytes and objects)."""
    ref = console.visible_bucket(session=session, actor=actor, name=bucket)
    max_bytes, bytes_ok = parse_quota_gib(quota_gb)
    max_objects, objects_ok = parse_count(quota_objects)
    errors: dict[str, str] = {}
    if not bytes_ok:
        errors["quota_gb"] = _QUOTA_HINT
    if not objects_ok:
        errors["quota_objects"] = _COUNT_HINT
    values = {"quota_gb": quota_gb, "quota_objects": quota_objects}
    if errors:
        raise _settings_rejected(request, session, actor, bucket, values, errors)
    service.set_quota(
        session=session,
        actor=actor,
        bucket=ref.name,
        max_bytes=max_bytes,
        max_objects=max_objects,
        context=store_context(request),
    )
    return see_other(bucket_url(ref.name, done="quota_set"))


@router.post("/buckets/{bucket}/delete", name="store.page.bucket_delete")
def delete_bucket(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    bucket: str,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Delete an empty bucket, after a confirmation that repeats its name."""
    ref = console.visible_bucket(
        session=session, actor=actor, name=bucket, permission=console.BUCKET_ADMIN
    )
    found = session.get(Bucket, ref.id)
    if found is not None and found.used_objects > 0:
        exc = BucketNotEmpty(
            "The bucket you tried to delete is not empty.", params={"bucket": ref.name}
        )
        raise _settings_rejected(
            request, session, actor, bucket, {}, {}, service_error(exc), status=409
        )
    if confirm != "yes":
        from civicloud.web.pages.once import form_token as new_token

        return page(
            request,
            "store/console/confirm.html",
            {
                "store_tab": "buckets",
                "title": N_("Delete the bucket %(name)s?"),
                "title_params": {"name": ref.name},
                "facts": [(N_("Bucket"), ref.name), (N_("Region"), ref.region_code)],
                "lead": N_("The bucket is empty. Deleting it frees its name for anyone."),
                "action": f"{bucket_url(ref.name)}/delete",
                "button": N_("Delete the bucket"),
                "cancel": bucket_url(ref.name),
                "hidden": [],
                "token": new_token(request),
            },
        )
    try:
        spend_form_token(session, request, form_token)
        service.delete_bucket(session=session, actor=actor, name=ref.name)
    except (StoreConflict, InvalidInput) as exc:
        raise _settings_rejected(
            request, session, actor, bucket, {}, {}, service_error(exc), status=exc.status
        ) from exc
    return see_other(f"{PREFIX}?done=bucket_deleted")
