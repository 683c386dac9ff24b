"""Users, passwords, API keys and browser sessions."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize, holds_all_of
from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict, NotFound, PermissionDenied
from civicloud.core.identity.models import ApiKey, User, WebSession
from civicloud.core.identity.passwords import Passwords
from civicloud.core.identity.schemas import ApiKeyCreate, UserCreate, UserUpdate
from civicloud.core.principals import invalidate_principals
from civicloud.core.tenants.models import Tenant
from civicloud.core.tenants.service import get_tenant_or_raise, in_subtrees

READ = "core.user.read"
ADMIN = "core.user.admin"
API_KEY_PREFIX = "cck"
#: Every this many failed sign-ins at one account in a row (over all addresses) log a warning.
FAILURES_TO_WARN = 50
log = logging.getLogger("civicloud.identity")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def get_user_by_username(*, session: Session, username: str) -> User | None:
    """The user ``username`` with no access check, or ``None``."""
    return session.scalars(select(User).where(User.username == username.lower())).one_or_none()


def get_user_or_raise(
    *, session: Session, actor: Actor, user_id: uuid.UUID, permission: str = READ
) -> User:
    """The user ``user_id`` if ``actor`` holds ``permission`` at its home tenant (404 if unseen)."""
    user = session.get(User, user_id)
    home = session.get(Tenant, user.tenant_id) if user else None
    if user is None or home is None:
        raise NotFound("no such user", resource="user")
    if user.id == actor.user_id and permission == READ:
        return user
    authorize(actor, permission, path=home.path, what="user")
    return user


def administered_user_or_raise(*, session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    """The user ``user_id`` if ``actor`` may administer them: change them, deactivate them, set
    their password, end their sign-ins, issue and revoke their keys (404 unseen, 403 refused)."""
    user = get_user_or_raise(session=session, actor=actor, user_id=user_id, permission=ADMIN)
    _require_holds_all_of(session, actor, user)
    return user


def may_administer_user(*, session: Session, actor: Actor, user: User) -> bool:
    """Whether :func:`administered_user_or_raise` lets ``actor`` administer ``user``: the rule
    every page asks before it offers an action on a user, so that it offers none the service
    refuses."""
    try:
        administered_user_or_raise(session=session, actor=actor, user_id=user.id)
    except (NotFound, PermissionDenied):
        return False
    return True


def _require_holds_all_of(session: Session, actor: Actor, user: User) -> None:
    """Refuse to act as ``user`` (password, keys, account) unless ``actor`` holds all it holds."""
    # Imported here: roles' service imports identity's models, and so this package.
    from civicloud.core.roles.service import load_actor

    if not holds_all_of(actor, load_actor(session=session, user=user, via="check")):
        raise PermissionDenied(
            "%(username)s holds permissions that you do not hold",
            params={"username": user.username},
        )


def list_users(
    *, session: Session, actor: Actor, tenant_id: uuid.UUID | None = None, limit: int = 500
) -> Sequence[User]:
    """Users homed in tenants the actor may read users of."""
    query = (
        select(User)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(in_subtrees(Tenant.path, actor.roots(READ)))
    )
    if tenant_id is not None:
        scope = get_tenant_or_raise(
            session=session, actor=actor, tenant_id=tenant_id, permission=READ
        )
        query = query.where(in_subtrees(Tenant.path, [scope.path]))
    return session.scalars(query.order_by(User.username).limit(limit)).all()


def create_user(*, session: Session, actor: Actor, data: UserCreate, passwords: Passwords) -> User:
    """Create a user homed in ``data.tenant_id``."""
    tenant = get_tenant_or_raise(
        session=session, actor=actor, tenant_id=data.tenant_id, permission=ADMIN
    )
    if get_user_by_username(session=session, username=data.username) is not None:
        raise Conflict("username %(username)s is taken", params={"username": data.username})
    user = User(
        id=uuid.uuid4(),
        username=data.username.lower(),
        display_name=data.display_name,
        email=data.email,
        password_hash=passwords.hash(data.password) if data.password else None,
        tenant_id=tenant.id,
    )
    session.add(user)
    audit.record(
        session=session,
        actor=actor,
        action="core.user.create",
        tenant_id=tenant.id,
        target=f"user:{user.username}",
    )
    return user


def update_user(
    *, session: Session, actor: Actor, user_id: uuid.UUID, data: UserUpdate, passwords: Passwords
) -> User:
    """Change a user's name, e-mail, password or active flag.

    A new password or a deactivation ends every sign-in of the user and revokes every API key
    (each revocation audited): a reactivated account starts again from fresh credentials.
    """
    user = administered_user_or_raise(session=session, actor=actor, user_id=user_id)
    invalidate_principals(session)
    given = data.model_dump(exclude_unset=True)
    # An e-mail given as null clears it; any other field given as null means "unchanged".
    changed = sorted(k for k, v in given.items() if v is not None or k == "email")
    if data.display_name is not None:
        user.display_name = data.display_name
    if "email" in given:
        user.email = data.email
    if data.is_active is False and user.is_active:
        # Imported here, as above: roles' service imports this module.
        from civicloud.core.roles.service import ensure_an_administrator_remains

        ensure_an_administrator_remains(session=session, user=user)
    revoked: list[str] = []
    ended = 0
    if data.password is not None:
        user.password_hash = passwords.hash(data.password)
        user.failed_logins = 0
        # A new password is a credential reset: it ends every browser session opened with the
        # old one and revokes every API key, which whoever held the old one could have made.
        ended = _revoke_all_sessions(session, user)
        revoked = _revoke_all_api_keys(session, actor, user, reason="password_set")
    if data.is_active is not None:
        if not data.is_active and user.is_active:
            # Keys are revoked, not only refused while the account is off: reactivating it
            # must not bring back to life a key copied somewhere meanwhile.
            ended += _revoke_all_sessions(session, user)
            revoked += _revoke_all_api_keys(session, actor, user, reason="deactivated")
        user.is_active = data.is_active
    detail: dict[str, object] = {"changed": changed}
    if revoked:
        detail["api_keys_revoked"] = revoked
    if ended:
        detail["sessions_ended"] = ended
    audit.record(
        session=session,
        actor=actor,
        action="core.user.update",
        tenant_id=user.tenant_id,
        target=f"user:{user.username}",
        detail=detail,
    )
    return user


@dataclass(frozen=True)
class Credentials:
    """A user's live sign-ins (browser sessions) and API keys: what a reset would end."""

    sessions: Sequence[WebSession]
    api_keys: Sequence[ApiKey]


def live_credentials(*, session: Session, actor: Actor, user_id: uuid.UUID) -> Credentials:
    """The live sessions and API keys of ``user_id`` (default: one's own, or one administers)."""
    user = _credentials_owner(session, actor, user_id)
    now = utcnow()
    return Credentials(
        sessions=session.scalars(
            select(WebSession)
            .where(
                WebSession.user_id == user.id,
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > now,
            )
            .order_by(WebSession.created_at.desc(), WebSession.id)
        ).all(),
        api_keys=session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None), ApiKey.expires_at > now)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        ).all(),
    )


def _credentials_owner(session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    """``user_id`` if its credentials are ``actor``'s to see and end: their own, or those of a
    user they administer."""
    if user_id == actor.user_id:
        return get_user_or_raise(session=session, actor=actor, user_id=user_id)
    return administered_user_or_raise(session=session, actor=actor, user_id=user_id)


def _revoke_all_api_keys(session: Session, actor: Actor, user: User, *, reason: str) -> list[str]:
    """Revoke every live API key of ``user`` (each audited); their prefixes."""
    now = utcnow()
    prefixes: list[str] = []
    for key in session.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None), ApiKey.expires_at > now)
        .order_by(ApiKey.prefix)
    ):
        key.revoked_at = now
        prefixes.append(key.prefix)
        audit.record(
            session=session,
            actor=actor,
            action="core.apikey.revoke",
            tenant_id=user.tenant_id,
            target=f"apikey:{key.prefix}",
            detail={"user": user.username, "reason": reason},
        )
    return prefixes


def _revoke_all_sessions(session: Session, user: User) -> int:
    """End every live browser session of ``user``; how many were live."""
    now = utcnow()
    live = 0
    for web_session in session.scalars(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
    ):
        if web_session.expires_at > now:
            live += 1
        web_session.revoked_at = now
    return live


# --- passwords and browser sessions -------------------------------------------------------


def authenticate_password(
    *, session: Session, username: str, password: str, passwords: Passwords
) -> User | None:
    """The user if ``password`` is right and the account is active, else ``None``; audited.

    Failures never lock the account: whoever can reach the sign-in form could otherwise lock
    out anyone, the administrator included. Guessing is stopped per client address instead
    (``core.identity.signin``, before this is called). ``failed_logins`` counts the account's
    failures over every address since its last sign-in, for the record: the sign-in that ends
    a run of failures says how many there were, and every :data:`FAILURES_TO_WARN` of them
    log a warning. Returns ``None`` rather than raising, so that the count the caller commits
    is kept.
    """
    user = get_user_by_username(session=session, username=username.strip())
    now = utcnow()
    ok = passwords.verify(user.password_hash if user else None, password)
    who = f"user:{username.strip().lower()[:64]}"
    if user is None:
        _login_audit(session, who, None, "denied", {"reason": "unknown user"})
        return None
    if not ok or not user.is_active:
        user.failed_logins += 1
        if user.failed_logins % FAILURES_TO_WARN == 0:
            log.warning(
                "repeated failed sign-ins",
                extra={"user": user.username, "failures": user.failed_logins},
            )
        _login_audit(session, who, user.tenant_id, "denied", {"reason": "bad password or inactive"})
        return None
    failures, user.failed_logins, user.last_login_at = user.failed_logins, 0, now
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    _login_audit(
        session, who, user.tenant_id, "success", {"failures_before": failures} if failures else {}
    )
    return user


def _login_audit(
    session: Session,
    who: str,
    tenant_id: uuid.UUID | None,
    outcome: str,
    detail: dict[str, object],
) -> None:
    actor = Actor(kind="user", name=who.removeprefix("user:"), via="login")
    audit.record(
        session=session,
        actor=actor,
        action="core.session.login",
        tenant_id=tenant_id,
        target=who,
        outcome="success" if outcome == "success" else "denied",
        detail=detail,
    )


def start_web_session(
    *,
    session: Session,
    user: User,
    hours: int,
    client_address: str | None = None,
    user_agent: str | None = None,
) -> tuple[WebSession, str]:
    """A new browser session for ``user`` and the token for its cookie (shown once); the
    client's address and user agent are kept for "My sign-ins"."""
    token = secrets.token_urlsafe(32)
    web_session = WebSession(
        id=uuid.uuid4(),
        token_hash=_sha256(token),
        user_id=user.id,
        expires_at=utcnow() + timedelta(hours=hours),
        client_address=(client_address or "")[:64] or None,
        user_agent=" ".join((user_agent or "").split())[:300] or None,
    )
    session.add(web_session)
    return web_session, token


def resolve_web_session(*, session: Session, token: str) -> User | None:
    """The active user behind a session cookie's ``token``, or ``None``."""
    found = resolve_web_session_row(session=session, token=token)
    return found[1] if found else None


def resolve_web_session_row(*, session: Session, token: str) -> tuple[WebSession, User] | None:
    """The live session and active user behind a cookie's ``token``, or ``None``."""
    if not token or len(token) > 128:
        return None
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _sha256(token))
    ).one_or_none()
    if row is None:
        return None
    web_session, user = row
    if web_session.revoked_at is not None or web_session.expires_at <= utcnow():
        return None
    return (web_session, user) if user.is_active else None


def end_web_session(*, session: Session, token: str) -> None:
    """Revoke the session behind ``token`` (signing out); unknown tokens are ignored."""
    web_session = session.scalars(
        select(WebSession).where(WebSession.token_hash == _sha256(token))
    ).one_or_none()
    if web_session is not None and web_session.revoked_at is None:
        web_session.revoked_at = utcnow()
        invalidate_principals(session)
        user = session.get(User, web_session.user_id)
        audit.record(
            session=session,
            actor=Actor(kind="user", name=user.username if user else "?", via="session"),
            action="core.session.logout",
            tenant_id=user.tenant_id if user else None,
            target=f"user:{user.username if user else web_session.user_id}",
        )


def get_web_session_or_raise(
    *, session: Session, actor: Actor, session_id: uuid.UUID
) -> tuple[WebSession, User]:
    """A browser session and its user, if ``actor`` may end it: their own, or one of a user
    they administer (404 otherwise, as for anything one may not see)."""
    web_session = session.get(WebSession, session_id)
    if web_session is None:
        raise NotFound("no such sign-in", resource="web_session")
    try:
        user = _credentials_owner(session, actor, web_session.user_id)
    except NotFound as exc:
        raise NotFound("no such sign-in", resource="web_session") from exc
    return web_session, user


def end_user_session(*, session: Session, actor: Actor, session_id: uuid.UUID) -> WebSession:
    """End one sign-in (browser session): one's own, or one of a user one administers; audited.
    Ending one that has already ended changes nothing."""
    web_session, user = get_web_session_or_raise(
        session=session, actor=actor, session_id=session_id
    )
    if web_session.revoked_at is None:
        web_session.revoked_at = utcnow()
        invalidate_principals(session)
        audit.record(
            session=session,
            actor=actor,
            action="core.session.end",
            tenant_id=user.tenant_id,
            target=f"user:{user.username}",
            detail={"session": str(web_session.id)},
        )
    return web_session


def end_user_sessions(
    *, session: Session, actor: Actor, user_id: uuid.UUID, keep: uuid.UUID | None = None
) -> int:
    """End every live sign-in of ``user_id`` (one's own, or a user one administers) but
    ``keep`` (the caller's own browser, when they end their other sign-ins); audited; how many
    ended."""
    user = _credentials_owner(session, actor, user_id)
    now = utcnow()
    ended = 0
    for web_session in session.scalars(
        select(WebSession).where(
            WebSession.user_id == user.id,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > now,
        )
    ):
        if web_session.id != keep:
            web_session.revoked_at = now
            ended += 1
    if ended:
        invalidate_principals(session)
        audit.record(
            session=session,
            actor=actor,
            action="core.session.end",
            tenant_id=user.tenant_id,
            target=f"user:{user.username}",
            detail={"sessions": ended, "all": True},
        )
    return ended


def current_web_session(*, session: Session, token: str) -> WebSession | None:
    """The live browser session behind a cookie's ``token`` (no access check), or ``None``."""
    found = resolve_web_session_row(session=session, token=token)
    return found[0] if found else None


# --- API keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A created key and its one-time token."""

    key: ApiKey
    token: str


def issue_api_key(
    *,
    session: Session,
    actor: Actor,
    data: ApiKeyCreate,
    default_days: int,
    user_id: uuid.UUID | None = None,
) -> IssuedKey:
    """Create an API key for ``user_id`` (default: the caller); the token is returned once."""
    owner_id = user_id or actor.user_id
    if owner_id is None:
        raise NotFound("no such user", resource="user")
    permission = READ if owner_id == actor.user_id else ADMIN
    user = get_user_or_raise(session=session, actor=actor, user_id=owner_id, permission=permission)
    if permission == ADMIN:
        _require_holds_all_of(session, actor, user)
    prefix = secrets.token_hex(4)
    while session.scalars(select(ApiKey.id).where(ApiKey.prefix == prefix)).first():
        prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=uuid.uuid4(),
        user_id=user.id,
        name=data.name,
        prefix=prefix,
        secret_hash=_sha256(secret),
        expires_at=utcnow() + timedelta(days=data.expires_in_days or default_days),
    )
    session.add(key)
    audit.record(
        session=session,
        actor=actor,
        action="core.apikey.create",
        tenant_id=user.tenant_id,
        target=f"apikey:{prefix}",
        detail={"user": user.username, "name": data.name},
    )
    return IssuedKey(key=key, token=f"{API_KEY_PREFIX}_{prefix}_{secret}")


def get_api_key_by_prefix(*, session: Session, prefix: str) -> ApiKey | None:
    """The API key with ``prefix`` with no access check, or ``None``."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()


def list_api_keys(
    *, session: Session, actor: Actor, user_id: uuid.UUID | None = None
) -> Sequence[ApiKey]:
    """API keys of ``user_id`` (default: the caller)."""
    owner_id = user_id or actor.user_id
    if owner_id is None:
        return []
    permission = READ if owner_id == actor.user_id else ADMIN
    get_user_or_raise(session=session, actor=actor, user_id=owner_id, permission=permission)
    return session.scalars(
        select(ApiKey).where(ApiKey.user_id == owner_id).order_by(ApiKey.created_at.desc())
    ).all()


def revoke_api_key(*, session: Session, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    """Revoke an API key: one's own, or one of a user the caller administers."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("no such API key", resource="api_key")
    permission = READ if key.user_id == actor.user_id else ADMIN
    try:
        user = get_user_or_raise(
            session=session, actor=actor, user_id=key.user_id, permission=permission
        )
    except NotFound as exc:
        raise NotFound("no such API key", resource="api_key") from exc
    if permission == ADMIN:
        _require_holds_all_of(session, actor, user)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        invalidate_principals(session)
        audit.record(
            session=session,
            actor=actor,
            action="core.apikey.revoke",
            tenant_id=user.tenant_id,
            target=f"apikey:{key.prefix}",
            detail={"user": user.username},
        )
    return key


def resolve_api_key(*, session: Session, token: str) -> tuple[ApiKey, User] | None:
    """The key and active user behind a bearer ``token``, or ``None`` (expired, revoked, wrong)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(token) > 200:
        return None
    _, prefix, secret = parts
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.prefix == prefix)
    ).one_or_none()
    if row is None:
        return None
    key, user = row
    if not hmac.compare_digest(key.secret_hash, _sha256(secret)):
        return None
    if key.revoked_at is not None or key.expires_at <= utcnow() or not user.is_active:
        return None
    return key, user


def touch_api_key(*, session: Session, key_id: uuid.UUID) -> None:
    """Record that a key was just used."""
    key = session.get(ApiKey, key_id)
    if key is not None:
        key.last_used_at = utcnow()
