"""Turning form input into service arguments, and refusals into messages next to the fields."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from civicloud.core.errors import CivicloudError
from civicloud.core.i18n import N_
from civicloud.web.deps import SAFE_METHODS

#: What to tell the user about a field whose value a schema refused.
FIELD_HINTS: dict[str, str] = {
    "slug": N_(
        "Use 1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit."
    ),
    "name_zh": N_("Enter a Chinese name of at most 200 characters."),
    "name_en": N_("Enter an English name of at most 200 characters."),
    "kind": N_("Choose a kind of tenant."),
    "region_code": N_("Choose a region."),
    "username": N_(
        "Use 3 to 64 lowercase letters, digits, dots, hyphens or underscores, starting with a letter or digit."
    ),
    "display_name": N_("Enter a name of at most 200 characters."),
    "email": N_("Enter an e-mail address such as name@example.gov.cn, or leave it empty."),
    "password": N_("Enter a password of at most 1024 characters, or leave it empty."),
    "tenant_id": N_("Choose a tenant."),
    "user_id": N_("Choose a user."),
    "role_name": N_("Choose a role."),
    "name": N_("Enter a name of at most 100 characters."),
    "expires_in_days": N_("Enter a whole number of days between 1 and 3650, or leave it empty."),
    "version": N_("Reload the page and try again."),
}
_FALLBACK_HINT = N_("This value is not valid.")
SLUG_TAKEN = N_("This identifier is already taken; choose another one.")
USERNAME_TAKEN = N_("This username is already taken; choose another one.")
WEAK_PASSWORD = N_("Choose a longer password that is harder to guess.")
ROLE_TAKEN = N_("A role of this name exists already; choose another one.")
#: A role's form: its fields' hints where they differ from the other forms'.
ROLE_HINTS: dict[str, str] = {
    "name": N_(
        "Use 2 to 64 lowercase letters, digits and underscores, starting with a letter, for example water_billing."
    ),
    "name_zh": N_("Enter a Chinese name of at most 100 characters."),
    "name_en": N_("Enter an English name of at most 100 characters."),
    "permissions": N_("Choose at least one permission."),
}

#: Messages shown after a successful form post (the redirect carries the key as ``?done=``).
DONE_MESSAGES: dict[str, str] = {
    "tenant_created": N_("The tenant was created."),
    "tenant_renamed": N_("The tenant was renamed."),
    "user_created": N_("The user was created. Grant them a role so that they can work."),
    "role_granted": N_("The role was granted."),
    "role_created": N_("The role was created. It can be granted now."),
    "user_updated": N_("The user's details were saved."),
    "user_deactivated": N_(
        "The user was deactivated: they were signed out everywhere and their API keys were revoked."
    ),
    "user_reactivated": N_(
        "The user was reactivated. They sign in with their password; their old API keys stay revoked."
    ),
    "sign_in_ended": N_("The sign-in was ended. That browser is signed out."),
    "sign_ins_ended": N_("The sign-ins were ended. Those browsers are signed out."),
    "role_revoked": N_("The role binding was revoked."),
    "password_set": N_(
        "The password was set. The user was signed out everywhere and their API keys were revoked."
    ),
    "key_revoked": N_("The API key was revoked. It stops working at once."),
    "signed_out": N_("You have signed out."),
}


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The msgid to show beside each field that a schema refused."""
    found: dict[str, str] = {}
    for error in exc.errors():
        location = error.get("loc") or ("",)
        field = str(location[0])
        found.setdefault(field, FIELD_HINTS.get(field, _FALLBACK_HINT))
    return found


def service_error(exc: CivicloudError) -> dict[str, Any]:
    """A refusal by a service, as the form's summary: a translated lead and the service's message
    (its template and parameters, rendered in the page's language by ``error_text``)."""
    return {
        "message": N_("The change was not made:"),
        "detail": exc.detail,
        "template": exc.message,
        "params": exc.params,
    }


def optional_uuid(value: str) -> uuid.UUID | str | None:
    """A form's id field: empty means ``None``; a bad id is passed on for the schema to refuse."""
    value = value.strip()
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return value


def optional_text(value: str) -> str | None:
    """A form's optional text field: surrounding blanks dropped, empty means ``None``."""
    value = value.strip()
    return value or None


def safe_next(value: str | None, default: str = "/console") -> str:
    """``value`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def rejected_form(
    data: Mapping[str, str], errors: Mapping[str, str], summary: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A form as a page shows it again: its values as sent, each field's error, and the
    service's reason for refusing it (``service_error``), if it gave one."""
    return {"data": dict(data), "errors": dict(errors), "summary": summary}


@dataclass(frozen=True)
class Upload:
    """A form's file: its bytes (empty when none was sent) and the name it was sent under."""

    content: bytes
    name: str


def uploaded(field: str) -> Callable[[Request], AsyncIterator[Upload]]:
    """A dependency that reads the form's file ``field`` (nothing on a GET or HEAD), and
    closes the form's files when the request is done (a route without form fields of its own
    has nobody else to)."""

    async def read(request: Request) -> AsyncIterator[Upload]:
        if request.method in SAFE_METHODS:
            yield Upload(b"", "")
            return
        form = await request.form()
        try:
            upload = form.get(field)
            if isinstance(upload, UploadFile):
                yield Upload(await upload.read(), upload.filename or "")
            else:
                yield Upload(b"", "")
        finally:
            await form.close()

    return read
