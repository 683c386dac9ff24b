"""Console pages: overview, users, roles and bindings and API keys (the audit log: ``audit.py``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicloud.core import audit, identity, roles, tenants
from civicloud.core.errors import Conflict, InvalidInput, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.identity import ApiKeyCreate, UserCreate, UserUpdate
from civicloud.core.identity.service import ADMIN as USER_ADMIN
from civicloud.core.identity.service import READ as USER_READ
from civicloud.core.roles import Actor, RoleBindingCreate, RoleCreate
from civicloud.core.roles.service import ADMIN as ROLE_ADMIN
from civicloud.web.deps import SESSION_COOKIE, ServicesDep, SessionDep, read_cookie, services_of
from civicloud.web.pages.forms import (
    DONE_MESSAGES,
    ROLE_HINTS,
    ROLE_TAKEN,
    USERNAME_TAKEN,
    WEAK_PASSWORD,
    field_errors,
    optional_text,
    optional_uuid,
    service_error,
)
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.once import form_token as new_form_token
from civicloud.web.pages.once import spend_form_token
from civicloud.web.pages.rendering import clear_cookie, may, render, set_cookie

router = APIRouter(prefix="/console", include_in_schema=False)

#: Holds a just-created API key's token between the form post and the page that shows it once.
NEW_KEY_COOKIE = "civicloud_new_key"
NEW_KEY_PATH = "/console/api-keys"
NEW_PASSWORD = N_("Enter the new password.")


def _done(request: Request) -> str | None:
    return DONE_MESSAGES.get(request.query_params.get("done", ""))


#: Browsers and systems as a user agent string names them, most specific first.
_BROWSERS = (
    ("MicroMessenger", "WeChat"),
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("HeadlessChrome/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
_SYSTEMS = (
    ("HarmonyOS", "HarmonyOS"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def browser_of(user_agent: str | None) -> str:
    """A user agent string in a few words (browser · system), for a person to recognise; the
    whole string is kept beside it."""
    if not user_agent:
        return ""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    named = " · ".join(n for n in (browser, system) if n)
    return named or user_agent[:60]


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
    """Create a user homed in a tenant you administer, then go on to grant them a role."""
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
        user = identity.create_user(
            session=session, actor=actor, data=data, passwords=services.passwords
        )
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
    # A new account can do nothing until it holds a role: the grant form comes next, with the
    # user chosen (for whoever may grant roles; the user's page otherwise).
    if roles.may_grant_roles(actor):
        return see_other(f"/console/roles?user_id={user.id}&done=user_created#grant-title")
    return see_other(f"/console/users/{user.id}?done=user_created")


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
    may_read = may(actor, USER_READ)
    return {
        "section": "users",
        "may_read": may_read,
        "users": identity.list_users(session=session, actor=actor) if may_read else [],
        "tenant_names": {t.id: t for t in visible},
        "home_choices": [t for t in visible if actor.can(USER_ADMIN, t.path)],
        "form": {"data": {"tenant_id": str(actor.tenant_id or "")}, "errors": {}, "summary": None},
        "done": _done(request),
    }


@router.get("/users/{user_id}", name="page.user")
def user_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, user_id: uuid.UUID
) -> HTMLResponse:
    """One user: their account, roles, sign-ins and API keys, and what you may do about them."""
    return render(request, "console/user.html", _user_context(request, session, actor, user_id))


def _user_context(
    request: Request, session: Session, actor: Actor, user_id: uuid.UUID
) -> dict[str, Any]:
    user = identity.get_user_or_raise(session=session, actor=actor, user_id=user_id)
    administers = identity.may_administer_user(session=session, actor=actor, user=user)
    own = user.id == actor.user_id
    credentials = (
        identity.live_credentials(session=session, actor=actor, user_id=user.id)
        if own or administers
        else None
    )
    bindings = roles.list_bindings(session=session, actor=actor, user_id=user.id)
    all_roles = roles.list_roles(session=session)
    return {
        "section": "users",
        "user": user,
        "own": own,
        "administers": administers,
        "credentials": credentials,
        "current_session": _current_session_id(request, session),
        "browser_of": browser_of,
        "home": tenants.get_tenant(session=session, tenant_id=user.tenant_id),
        "bindings": bindings,
        "revocable": {
            b.id for b in bindings if roles.may_revoke_role(session=session, actor=actor, binding=b)
        },
        "may_grant": roles.may_grant_roles(actor),
        "role_names": {r.name: r for r in all_roles},
        "binding_tenants": {
            b.tenant_id: tenants.get_tenant(session=session, tenant_id=b.tenant_id)
            for b in bindings
            if b.tenant_id is not None
        },
        "form": {
            "data": {"display_name": user.display_name, "email": user.email or ""},
            "errors": {},
            "summary": None,
        },
        "done": _done(request),
    }


@router.post("/users/{user_id}", name="page.user_update")
def update_user(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    user_id: uuid.UUID,
    display_name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
) -> Response:
    """Change a user's name and e-mail address (an empty address clears it)."""
    values = {"display_name": display_name, "email": email}
    try:
        data = UserUpdate(display_name=display_name.strip(), email=optional_text(email))
        identity.update_user(
            session=session, actor=actor, user_id=user_id, data=data, passwords=services.passwords
        )
    except ValidationError as exc:
        raise _user_rejected(request, session, actor, user_id, values, field_errors(exc)) from exc
    return see_other(f"/console/users/{user_id}?done=user_updated")


def _user_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    user_id: uuid.UUID,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, Any] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _user_context(request, session, actor, user_id)
    context["form"] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/user.html", context, status_code=status_code))


@router.post("/users/{user_id}/deactivate", name="page.user_deactivate")
def deactivate_user(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    user_id: uuid.UUID,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Deactivate a user, in two steps: the form is answered with a confirmation naming the user,
    their tenant and the sign-ins and API keys that end; only its button deactivates (once)."""
    user = identity.administered_user_or_raise(session=session, actor=actor, user_id=user_id)
    if confirm != "yes":
        credentials = identity.live_credentials(session=session, actor=actor, user_id=user.id)
        return _confirmation(
            request,
            session,
            user,
            credentials,
            kind="deactivate",
            action=f"/console/users/{user.id}/deactivate",
            cancel=f"/console/users/{user.id}",
        )
    spend_form_token(session, request, form_token)
    try:
        identity.update_user(
            session=session,
            actor=actor,
            user_id=user.id,
            data=UserUpdate(is_active=False),
            passwords=services.passwords,
        )
    except Conflict as exc:
        # The last platform administrator stays: said on the user's page, with the reason.
        raise _user_rejected(
            request, session, actor, user_id, {}, {}, service_error(exc), exc.status
        ) from exc
    return see_other(f"/console/users/{user.id}?done=user_deactivated")


@router.post("/users/{user_id}/reactivate", name="page.user_reactivate")
def reactivate_user(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    user_id: uuid.UUID,
) -> Response:
    """Let a deactivated user sign in again (with new credentials: the old ones were ended)."""
    identity.update_user(
        session=session,
        actor=actor,
        user_id=user_id,
        data=UserUpdate(is_active=True),
        passwords=services.passwords,
    )
    return see_other(f"/console/users/{user_id}?done=user_reactivated")


@router.get("/users/{user_id}/password", name="page.user_password")
def password_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, user_id: uuid.UUID
) -> HTMLResponse:
    """Set a user's password: what it ends, repeated, and the new password to type."""
    return render(
        request, "console/user_password.html", _password_context(request, session, actor, user_id)
    )


def _password_context(
    request: Request, session: Session, actor: Actor, user_id: uuid.UUID
) -> dict[str, Any]:
    user = identity.administered_user_or_raise(session=session, actor=actor, user_id=user_id)
    return {
        "section": "users",
        "user": user,
        "home": tenants.get_tenant(session=session, tenant_id=user.tenant_id),
        "credentials": identity.live_credentials(session=session, actor=actor, user_id=user.id),
        "min_length": services_of(request).passwords.min_length,
        "form_token": new_form_token(request),
        "form": {"data": {}, "errors": {}, "summary": None},
    }


@router.post("/users/{user_id}/password", name="page.user_set_password")
def set_user_password(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    services: ServicesDep,
    user_id: uuid.UUID,
    password: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Set a user's password: their sign-ins end and their API keys are revoked (once: the form
    sent again is refused)."""
    # A user the caller may not administer is not there (404) or refused (403), password or none.
    identity.administered_user_or_raise(session=session, actor=actor, user_id=user_id)
    try:
        if not password:
            raise _password_rejected(request, session, actor, user_id, {"password": NEW_PASSWORD})
        # Spent beside the change: a refused password rolls it back, so the form can be sent again.
        spend_form_token(session, request, form_token)
        identity.update_user(
            session=session,
            actor=actor,
            user_id=user_id,
            data=UserUpdate(password=password),
            passwords=services.passwords,
        )
    except ValidationError as exc:
        raise _password_rejected(request, session, actor, user_id, field_errors(exc)) from exc
    except InvalidInput as exc:
        raise _password_rejected(
            request, session, actor, user_id, {"password": WEAK_PASSWORD}, service_error(exc)
        ) from exc
    return see_other(f"/console/users/{user_id}?done=password_set")


def _password_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    user_id: uuid.UUID,
    errors: dict[str, str],
    summary: dict[str, Any] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _password_context(request, session, actor, user_id)
    context["form"] = {"data": {}, "errors": errors, "summary": summary}
    return FormRejected(
        render(request, "console/user_password.html", context, status_code=status_code)
    )


# --- sign-ins -------------------------------------------------------------------------------


def _current_session_id(request: Request, session: Session) -> uuid.UUID | None:
    """The id of the browser session this page is shown in."""
    token = read_cookie(request, SESSION_COOKIE)
    found = identity.current_web_session(session=session, token=token) if token else None
    return found.id if found else None


@router.get("/sign-ins", name="page.sign_ins")
def sign_ins_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """Your own sign-ins (browsers) and API keys, each of which you can end."""
    assert actor.user_id is not None  # a signed-in operator is always a user
    return render(
        request,
        "console/sign_ins.html",
        {
            "section": "sign_ins",
            "credentials": identity.live_credentials(
                session=session, actor=actor, user_id=actor.user_id
            ),
            "current_session": _current_session_id(request, session),
            "browser_of": browser_of,
            "own": True,
            "user": identity.get_user_or_raise(session=session, actor=actor, user_id=actor.user_id),
            "done": _done(request),
        },
    )


@router.post("/sign-ins/{session_id}/end", name="page.sign_in_end")
def end_sign_in(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    session_id: uuid.UUID,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """End one sign-in (yours, or of a user you administer), after a confirmation."""
    web_session, user = identity.get_web_session_or_raise(
        session=session, actor=actor, session_id=session_id
    )
    back = "/console/sign-ins" if user.id == actor.user_id else f"/console/users/{user.id}"
    if confirm != "yes":
        return _confirmation(
            request,
            session,
            user,
            None,
            kind="end_session",
            action=f"/console/sign-ins/{web_session.id}/end",
            cancel=back,
            web_session=web_session,
            current=_current_session_id(request, session),
        )
    spend_form_token(session, request, form_token)
    identity.end_user_session(session=session, actor=actor, session_id=web_session.id)
    return see_other(f"{back}?done=sign_in_ended")


@router.post("/users/{user_id}/sign-ins/end", name="page.sign_ins_end")
def end_all_sign_ins(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    user_id: uuid.UUID,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """End every sign-in of a user you administer (or every other one of yours), after a
    confirmation."""
    own = user_id == actor.user_id
    keep = _current_session_id(request, session) if own else None
    credentials = identity.live_credentials(session=session, actor=actor, user_id=user_id)
    user = identity.get_user_or_raise(session=session, actor=actor, user_id=user_id)
    back = "/console/sign-ins" if own else f"/console/users/{user.id}"
    if confirm != "yes":
        return _confirmation(
            request,
            session,
            user,
            credentials,
            kind="end_other_sessions" if own else "end_sessions",
            action=f"/console/users/{user.id}/sign-ins/end",
            cancel=back,
            current=keep,
        )
    spend_form_token(session, request, form_token)
    identity.end_user_sessions(session=session, actor=actor, user_id=user.id, keep=keep)
    return see_other(f"{back}?done=sign_ins_ended")


def _confirmation(
    request: Request,
    session: Session,
    user: identity.User,
    credentials: identity.Credentials | None,
    *,
    kind: str,
    action: str,
    cancel: str,
    web_session: identity.WebSession | None = None,
    current: uuid.UUID | None = None,
) -> HTMLResponse:
    """The confirmation step of an action on a user: who, where, and what ends."""
    actor: Actor | None = getattr(request.state, "actor", None)
    section = "sign_ins" if actor is not None and actor.user_id == user.id else "users"
    return render(
        request,
        "console/user_confirm.html",
        {
            "section": section,
            "kind": kind,
            "user": user,
            "home": tenants.get_tenant(session=session, tenant_id=user.tenant_id),
            "credentials": credentials,
            "web_session": web_session,
            "current_session": current,
            "browser_of": browser_of,
            "action": action,
            "cancel": cancel,
            "form_token": new_form_token(request),
        },
    )


# --- roles and bindings ---------------------------------------------------------------------


@router.get("/roles", name="page.roles")
def roles_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
) -> HTMLResponse:
    """The roles and their permissions; the role bindings in your subtree; the grant form (with
    ``user_id`` chosen, coming from a user just created)."""
    if user_id is not None:
        # Like every other id: a user the caller cannot see is not there (404).
        identity.get_user_or_raise(session=session, actor=actor, user_id=user_id)
    context = _roles_context(request, session, actor)
    if user_id is not None:
        context["form"]["data"] = {"user_id": str(user_id)}
    return render(request, "console/roles.html", context)


@router.post("/roles", name="page.role_create")
def create_role(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    name: Annotated[str, Form()] = "",
    name_zh: Annotated[str, Form()] = "",
    name_en: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Define a custom role from the registered permissions (platform administrators)."""
    chosen = [p for p in permissions or [] if p]
    values: dict[str, Any] = {
        "name": name,
        "name_zh": name_zh,
        "name_en": name_en,
        "permissions": chosen,
    }
    try:
        data = RoleCreate(
            name=name.strip(), name_zh=name_zh.strip(), name_en=name_en.strip(), permissions=chosen
        )
        roles.create_role(session=session, actor=actor, data=data)
    except ValidationError as exc:
        errors = field_errors(exc)
        for field, hint in ROLE_HINTS.items():
            if field in errors:
                errors[field] = hint
        raise _roles_rejected(request, session, actor, values, errors, form="role_form") from exc
    except (Conflict, InvalidInput) as exc:
        errors = {"name": ROLE_TAKEN} if isinstance(exc, Conflict) else {}
        raise _roles_rejected(
            request, session, actor, values, errors, service_error(exc), exc.status, "role_form"
        ) from exc
    return see_other("/console/roles?done=role_created")


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
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    binding_id: uuid.UUID,
    confirm: Annotated[str, Form(max_length=10)] = "",
    form_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Take back a role binding (never the last platform administrator's), after a
    confirmation naming the user, the role and where it is held."""
    binding, holder = roles.get_revocable_binding_or_raise(
        session=session, actor=actor, binding_id=binding_id
    )
    if confirm != "yes":
        return render(
            request,
            "console/role_revoke_confirm.html",
            {
                "section": "roles",
                "binding": binding,
                "holder": holder,
                "where": tenants.get_tenant(session=session, tenant_id=binding.tenant_id)
                if binding.tenant_id
                else None,
                "role_names": {r.name: r for r in roles.list_roles(session=session)},
                "own": binding.user_id == actor.user_id,
                "form_token": new_form_token(request),
            },
        )
    spend_form_token(session, request, form_token)
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
    values: dict[str, Any],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
    form: str = "form",
) -> FormRejected:
    context = _roles_context(request, session, actor)
    context[form] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/roles.html", context, status_code=status_code))


def _roles_context(request: Request, session: Session, actor: Actor) -> dict[str, Any]:
    visible = tenants.list_tenants(session=session, actor=actor)
    may_read = may(actor, USER_READ)
    users = identity.list_users(session=session, actor=actor) if may_read else []
    all_roles = roles.list_roles(session=session)
    # One's own bindings are always one's to see; the others', with core.user.read.
    bindings = roles.list_bindings(
        session=session, actor=actor, user_id=None if may_read else actor.user_id
    )
    user_by_id = {u.id: u for u in users}
    if actor.user_id is not None and actor.user_id not in user_by_id:
        user_by_id[actor.user_id] = identity.get_user_or_raise(
            session=session, actor=actor, user_id=actor.user_id
        )
    return {
        "section": "roles",
        "may_read": may_read,
        "roles": all_roles,
        "role_names": {r.name: r for r in all_roles},
        "permissions": roles.known_permissions(),
        "bindings": bindings,
        "revocable": {
            b.id for b in bindings if roles.may_revoke_role(session=session, actor=actor, binding=b)
        },
        "users": users,
        "user_by_id": user_by_id,
        "tenant_names": {t.id: t for t in visible},
        "scope_choices": [t for t in visible if actor.can(ROLE_ADMIN, t.path)],
        # Platform-wide grants need what defining a role needs: core.role.admin platform-wide.
        "platform_choice": roles.may_create_role(actor),
        "may_create_role": roles.may_create_role(actor),
        "form": {"data": {}, "errors": {}, "summary": None},
        "role_form": {"data": {"permissions": []}, "errors": {}, "summary": None},
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
    """Revoke an API key: one of yours, or one of a user you administer."""
    key = identity.revoke_api_key(session=session, actor=actor, key_id=key_id)
    if key.user_id != actor.user_id:
        return see_other(f"/console/users/{key.user_id}?done=key_revoked")
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
