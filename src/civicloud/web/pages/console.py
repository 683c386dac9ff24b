"""Console pages: overview, users, roles and bindings and API keys (the audit log: ``audit.py``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicloud.core import audit, identity, roles, tenants
from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.identity import ApiKeyCreate, UserCreate, UserUpdate
from civicloud.core.roles import Actor, RoleBindingCreate
from civicloud.core.roles.service import ADMIN as ROLE_ADMIN
from civicloud.web.deps import ServicesDep, SessionDep, read_cookie, services_of
from civicloud.web.pages.forms import (
    DONE_MESSAGES,
    FIELD_HINTS,
    USERNAME_TAKEN,
    WEAK_PASSWORD,
    field_errors,
    optional_text,
    optional_uuid,
    service_error,
)
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import clear_cookie, render, set_cookie

router = APIRouter(prefix="/console", include_in_schema=False)

#: Holds a just-created API key's token between the form post and the page that shows it once.
NEW_KEY_COOKIE = "civicloud_new_key"
NEW_KEY_PATH = "/console/api-keys"
NEW_PASSWORD = N_("Enter the new password.")


def _done(request: Request) -> str | None:
    return DONE_MESSAGES.get(request.query_params.get("done", ""))


@router.get("", name="page.console")
def overview(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The console's front page: who you are, your roles, and what you can reach."""
    assert actor.user_id is not None  # a signed-in operator is always a user
    me = identity.get_user_or_raise(session=session, actor=actor, user_id=actor.user_id)
    visible = tenants.list_tenants(session=session, actor=actor)
    # A grant names a tenant by id; the caller holds the grant, so it may see that tenant's name.
    grant_tenants = {
        g.tenant_id: tenants.get_tenant(session=session, tenant_id=g.tenant_id)
        for g in actor.grants
        if g.tenant_id is not None
    }
    return render(
        request,
        "console/overview.html",
        {
            "section": "overview",
            "me": me,
            "home": tenants.get_tenant(session=session, tenant_id=me.tenant_id),
            "grant_tenants": grant_tenants,
            "role_names": {r.name: r for r in roles.list_roles(session=session)},
            "counts": {
                "tenants": len(visible),
                "users": len(identity.list_users(session=session, actor=actor)),
                "keys": sum(
                    1
                    for k in identity.list_api_keys(session=session, actor=actor)
                    if k.revoked_at is None
                ),
            },
            "recent": audit.list_records(session=session, actor=actor, limit=5),
        },
    )


# --- users ----------------------------------------------------------------------------------


@router.get("/users", name="page.users")
def users_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """Users homed in your subtree, and a form to create one."""
    return render(request, "console/users.html", _users_context(request, session, actor))


@router.post("/users", name="page.user_create")
def create_user(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    tenant_id: Annotated[str, Form()] = "",
) -> Response:
    """Create a user homed in a tenant you administer."""
    values = {
        "username": username,
        "display_name": display_name,
        "email": email,
        "tenant_id": tenant_id,
    }
    try:
        data = UserCreate(
            username=username.strip().lower(),
            display_name=display_name.strip(),
            email=optional_text(email),
            password=password or None,
            tenant_id=optional_uuid(tenant_id),
        )
        identity.create_user(session=session, actor=actor, data=data, passwords=services.passwords)
    except ValidationError as exc:
        raise _users_rejected(request, session, actor, values, field_errors(exc)) from exc
    except Conflict as exc:
        raise _users_rejected(
            request, session, actor, values, {"username": USERNAME_TAKEN}, status_code=409
        ) from exc
    except InvalidInput as exc:
        # The only value a user's creation refuses after the schema is a weak password.
        raise _users_rejected(
            request, session, actor, values, {"password": WEAK_PASSWORD}, service_error(exc)
        ) from exc
    return see_other("/console/users?done=user_created")


@router.post("/users/password", name="page.user_set_password")
def set_user_password(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    user_id: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    """Set a user's password: their sessions end and their API keys are revoked."""
    values = {"user_id": user_id}
    target = optional_uuid(user_id)
    if not isinstance(target, uuid.UUID):
        raise _password_rejected(
            request, session, actor, values, {"user_id": FIELD_HINTS["user_id"]}
        )
    try:
        if not password:
            # A user the caller may not administer is not there (404), password or none.
            identity.get_user_or_raise(
                session=session, actor=actor, user_id=target, permission="core.user.admin"
            )
            raise _password_rejected(request, session, actor, values, {"password": NEW_PASSWORD})
        identity.update_user(
            session=session,
            actor=actor,
            user_id=target,
            data=UserUpdate(password=password),
            passwords=services.passwords,
        )
    except ValidationError as exc:
        raise _password_rejected(request, session, actor, values, field_errors(exc)) from exc
    except InvalidInput as exc:
        raise _password_rejected(
            request, session, actor, values, {"password": WEAK_PASSWORD}, service_error(exc)
        ) from exc
    except (NotFound, PermissionDenied) as exc:
        raise _password_rejected(
            request, session, actor, values, {}, service_error(exc), exc.status
        ) from exc
    return see_other("/console/users?done=password_set")


def _password_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, Any] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _users_context(request, session, actor)
    context["password_form"] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/users.html", context, status_code=status_code))


def _users_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _users_context(request, session, actor)
    context["form"] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/users.html", context, status_code=status_code))


def _users_context(request: Request, session: Session, actor: Actor) -> dict[str, Any]:
    visible = tenants.list_tenants(session=session, actor=actor)
    users = identity.list_users(session=session, actor=actor)
    admin_homes = {t.id for t in visible if actor.can("core.user.admin", t.path)}
    return {
        "section": "users",
        "users": users,
        "tenant_names": {t.id: t for t in visible},
        "home_choices": [t for t in visible if actor.can("core.user.admin", t.path)],
        # Offered for users homed where the actor administers users; the service still refuses
        # anyone holding permissions the actor does not hold.
        "password_choices": [
            u for u in users if u.tenant_id in admin_homes and u.id != actor.user_id
        ],
        "form": {"data": {"tenant_id": str(actor.tenant_id or "")}, "errors": {}, "summary": None},
        "password_form": {"data": {}, "errors": {}, "summary": None},
        "done": _done(request),
    }


# --- roles and bindings ---------------------------------------------------------------------


@router.get("/roles", name="page.roles")
def roles_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The roles and their permissions; the role bindings in your subtree."""
    return render(request, "console/roles.html", _roles_context(request, session, actor))


@router.post("/roles/bindings", name="page.role_grant")
def grant_role(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    user_id: Annotated[str, Form()] = "",
    role_name: Annotated[str, Form()] = "",
    tenant_id: Annotated[str, Form()] = "",
) -> Response:
    """Grant a role to a user at a tenant (or platform-wide)."""
    values = {"user_id": user_id, "role_name": role_name, "tenant_id": tenant_id}
    try:
        data = RoleBindingCreate(
            user_id=optional_uuid(user_id),
            role_name=role_name.strip(),
            tenant_id=optional_uuid(tenant_id),
        )
        roles.grant_role(session=session, actor=actor, data=data)
    except ValidationError as exc:
        raise _roles_rejected(request, session, actor, values, field_errors(exc)) from exc
    except (Conflict, InvalidInput, PermissionDenied) as exc:
        raise _roles_rejected(
            request, session, actor, values, {}, service_error(exc), exc.status
        ) from exc
    return see_other("/console/roles?done=role_granted")


@router.post("/roles/bindings/{binding_id}/revoke", name="page.role_revoke")
def revoke_role(
    request: Request, session: SessionDep, actor: ConsoleActorDep, binding_id: uuid.UUID
) -> Response:
    """Take back a role binding (never the last platform administrator's)."""
    try:
        roles.revoke_role(session=session, actor=actor, binding_id=binding_id)
    except Conflict as exc:
        raise _roles_rejected(
            request, session, actor, {}, {}, service_error(exc), exc.status
        ) from exc
    return see_other("/console/roles?done=role_revoked")


def _roles_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _roles_context(request, session, actor)
    context["form"] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/roles.html", context, status_code=status_code))


def _grants_platform_wide(actor: Actor) -> bool:
    """Whether the form may offer platform-wide grants (the service decides in the end)."""
    try:
        actor.require_platform(ROLE_ADMIN)
    except PermissionDenied:
        return False
    return True


def _roles_context(request: Request, session: Session, actor: Actor) -> dict[str, Any]:
    visible = tenants.list_tenants(session=session, actor=actor)
    users = identity.list_users(session=session, actor=actor)
    all_roles = roles.list_roles(session=session)
    return {
        "section": "roles",
        "roles": all_roles,
        "role_names": {r.name: r for r in all_roles},
        "permissions": roles.known_permissions(),
        "bindings": roles.list_bindings(session=session, actor=actor),
        "users": users,
        "user_by_id": {u.id: u for u in users},
        "tenant_names": {t.id: t for t in visible},
        "scope_choices": [t for t in visible if actor.can("core.role.admin", t.path)],
        "platform_choice": _grants_platform_wide(actor),
        "form": {"data": {}, "errors": {}, "summary": None},
        "done": _done(request),
    }


# --- API keys -------------------------------------------------------------------------------


@router.get("/api-keys", name="page.api_keys")
def api_keys_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """Your API keys; a key just created is shown here once."""
    context = _keys_context(request, session, actor)
    context["new_token"] = read_cookie(request, NEW_KEY_COOKIE, NEW_KEY_PATH)
    response = render(request, "console/api_keys.html", context)
    if context["new_token"]:
        clear_cookie(response, request, NEW_KEY_COOKIE, path=NEW_KEY_PATH)
    return response


@router.post("/api-keys", name="page.api_key_create")
def create_api_key(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    name: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "",
) -> Response:
    """Create an API key for yourself; its token is shown once on the next page."""
    values = {"name": name, "expires_in_days": expires_in_days}
    try:
        data = ApiKeyCreate(name=name.strip(), expires_in_days=optional_text(expires_in_days))
        issued = identity.issue_api_key(
            session=session,
            actor=actor,
            data=data,
            default_days=services.settings.auth.api_key_days,
        )
    except ValidationError as exc:
        context = _keys_context(request, session, actor)
        context["form"] = {"data": values, "errors": field_errors(exc), "summary": None}
        raise FormRejected(
            render(request, "console/api_keys.html", context, status_code=422)
        ) from exc
    response = see_other(NEW_KEY_PATH)
    # The token rides in a short-lived cookie scoped to the keys page, which shows it once and
    # clears it, so that it never appears in an address, a log line or the browser's history.
    set_cookie(response, request, NEW_KEY_COOKIE, issued.token, max_age=300, path=NEW_KEY_PATH)
    return response


@router.post("/api-keys/{key_id}/revoke", name="page.api_key_revoke")
def revoke_api_key(
    request: Request, session: SessionDep, actor: ConsoleActorDep, key_id: uuid.UUID
) -> Response:
    """Revoke one of your API keys."""
    identity.revoke_api_key(session=session, actor=actor, key_id=key_id)
    return see_other(f"{NEW_KEY_PATH}?done=key_revoked")


def _keys_context(request: Request, session: Session, actor: Actor) -> dict[str, Any]:
    return {
        "section": "api_keys",
        "keys": identity.list_api_keys(session=session, actor=actor),
        "new_token": None,
        "default_days": services_of(request).settings.auth.api_key_days,
        "form": {"data": {}, "errors": {}, "summary": None},
        "done": _done(request),
    }
