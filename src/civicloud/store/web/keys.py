"""S3 access keys in the console: your own (list, create, revoke), and for administrators the
keys of a user they administer (``store.keys`` decides who may)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.errors import CivicloudError, NotFound
from civicloud.core.i18n import N_
from civicloud.core.identity.models import User
from civicloud.core.identity.service import administered_user_or_raise
from civicloud.store import keys
from civicloud.store.web.views import PREFIX, form_state, page, store_context
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import rejected_form, service_error
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.once import form_token as new_form_token
from civicloud.web.pages.once import spend_form_token

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _user(session: Session, actor: Actor, user_id: str) -> User | None:
    """The user whose keys the page is about (``None``: the reader's own)."""
    if not user_id:
        return None
    try:
        chosen = uuid.UUID(user_id)
    except ValueError as exc:
        raise NotFound("no such user", resource="user") from exc
    if chosen == actor.user_id:
        return None
    return administered_user_or_raise(session=session, actor=actor, user_id=chosen)


def _keys_context(session: Session, actor: Actor, user: User | None) -> dict[str, Any]:
    return {
        "store_tab": "keys",
        "owner": user,
        "keys": keys.list_keys(
            session=session, actor=actor, user_id=user.id if user is not None else None
        ),
        "form": form_state({"description": "", "read_only": ""}),
        "issued": None,
    }


def _keys_url(user: User | None) -> str:
    return f"{PREFIX}/keys" + (f"?user_id={user.id}" if user is not None else "")


@router.get("/keys", name="store.page.keys")
def keys_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    user_id: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """Your S3 access keys (or a user's you administer)."""
    user = _user(session, actor, user_id)
    return page(request, "store/console/keys.html", _keys_context(session, actor, user))


@router.post("/keys", name="store.page.key_create")
def create_key(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    user_id: Annotated[str, Form(max_length=40)] = "",
    description: Annotated[str, Form(max_length=300)] = "",
    read_only: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Issue an access key; its secret is shown once, on the answer to this form."""
    user = _user(session, actor, user_id)
    values = {"description": description, "read_only": read_only}
    if len(description.strip()) > 200:
        context = _keys_context(session, actor, user)
        context["form"] = rejected_form(
            values, {"description": N_("Enter at most 200 characters.")}
        )
        raise FormRejected(page(request, "store/console/keys.html", context, status_code=422))
    try:
        issued = keys.issue_key(
            session=session,
            actor=actor,
            context=store_context(request),
            user_id=user.id if user is not None else None,
            read_only=read_only == "yes",
            description=description,
        )
    except CivicloudError as exc:
        context = _keys_context(session, actor, user)
        context["form"] = rejected_form(values, {}, service_error(exc))
        raise FormRejected(
            page(request, "store/console/keys.html", context, status_code=exc.status)
        ) from exc
    session.flush()  # the key exists before the page lists it
    context = _keys_context(session, actor, user)
    context["issued"] = issued
    return page(request, "store/console/keys.html", context)


@router.post("/keys/{access_key_id}/revoke", name="store.page.key_revoke")
def revoke_key(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    access_key_id: str,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Revoke an access key, after a confirmation."""
    key = keys.get_key_or_raise(session=session, actor=actor, access_key_id=access_key_id[:20])
    owner = None if key.user_id == actor.user_id else session.get(User, key.user_id)
    if confirm != "yes":
        return page(
            request,
            "store/console/confirm.html",
            {
                "store_tab": "keys",
                "title": N_("Revoke the access key %(key)s?"),
                "title_params": {"key": key.access_key_id},
                "facts": [
                    (N_("Access key"), key.access_key_id),
                    (N_("Description"), key.description or "—"),
                ],
                "lead": N_(
                    "Programs that sign with this key stop working at once. This cannot be undone."
                ),
                "action": f"{PREFIX}/keys/{key.access_key_id}/revoke",
                "button": N_("Revoke the key"),
                "cancel": _keys_url(owner),
                "hidden": [],
                "token": new_form_token(request),
            },
        )
    spend_form_token(session, request, form_token)
    keys.revoke_key(session=session, actor=actor, access_key_id=key.access_key_id)
    url = _keys_url(owner)
    return see_other(url + ("&" if "?" in url else "?") + "done=key_revoked")
