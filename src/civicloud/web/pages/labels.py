"""Words the pages show for codes: tenant kinds, audit outcomes, HTTP statuses, known error details.

Each is a msgid marked with ``N_`` and translated when the page renders.
"""

from __future__ import annotations

from collections.abc import Mapping

from civicloud.core.i18n import N_

KIND_LABELS: dict[str, str] = {
    "country": N_("Country"),
    "province": N_("Province"),
    "city": N_("City"),
    "district": N_("District"),
    "agency": N_("Agency"),
    "enterprise": N_("Enterprise"),
    "facility": N_("Facility"),
    "partner": N_("Partner"),
}

OUTCOME_LABELS: dict[str, str] = {
    "success": N_("Succeeded"),
    "denied": N_("Denied"),
    "failed": N_("Failed"),
}

#: Core's permissions in words; a module's own permissions show the description it registered.
PERMISSION_LABELS: dict[str, str] = {
    "*": N_("Every permission"),
    "core.tenant.read": N_("See tenants and their details"),
    "core.tenant.admin": N_("Create, rename, move and delete tenants"),
    "core.user.read": N_("See users"),
    "core.user.admin": N_("Create, change and deactivate users"),
    "core.role.admin": N_("Grant and revoke roles"),
    "core.audit.read": N_("Read the audit log"),
    "core.region.admin": N_("Register regions (platform-wide only)"),
    "core.job.read": N_("See the background jobs and their runs (platform-wide only)"),
}

_STATUS_TITLES: dict[int, str] = {
    400: N_("The request could not be understood"),
    401: N_("Please sign in"),
    403: N_("You may not do this"),
    404: N_("Page not found"),
    405: N_("This action is not available here"),
    409: N_("This clashes with a recent change"),
    413: N_("What you sent is too large"),
    422: N_("Some values are not valid"),
    500: N_("Something went wrong on our side"),
}

_STATUS_EXPLANATIONS: dict[int, str] = {
    400: N_("Check the address or the form and try again."),
    401: N_("This page is for signed-in staff. Sign in and try again."),
    403: N_(
        "Your account does not hold the permission this needs, or the form has expired. Go back, reload the page and try again; if you need access, ask your tenant administrator."
    ),
    404: N_(
        "The page or record does not exist, or your account may not see it. Check the address, or start again from the home page."
    ),
    405: N_("Go back to the previous page and use its buttons and links."),
    409: N_("Someone may have changed the same record. Reload the page and try again."),
    413: N_("Send less at once and try again."),
    422: N_("Go back, correct the values and try again."),
    500: N_(
        "The error has been logged. Please try again later; if it persists, contact the operators of this service and quote the request number."
    ),
}

_GENERIC_TITLE = N_("The request could not be completed")
_GENERIC_EXPLANATION = N_("Go back and try again.")

#: Error details raised by core services that the pages translate; others are shown as they are.
KNOWN_DETAILS: frozenset[str] = frozenset(
    {
        N_("the form is stale or was not sent by civicloud (CSRF check failed)"),
        N_("no such tenant"),
        N_("no such user"),
        N_("no such API key"),
        N_("no such role binding"),
        N_("Not Found"),
        N_("Method Not Allowed"),
        N_("an unexpected error occurred; it was logged"),
    }
)


def kind_label(kind: str) -> str:
    """The msgid naming a tenant kind."""
    return KIND_LABELS.get(kind, kind)


def outcome_label(outcome: str) -> str:
    """The msgid naming an audit outcome."""
    return OUTCOME_LABELS.get(outcome, outcome)


def status_title(status: int) -> str:
    """The msgid of an error page's heading."""
    return _STATUS_TITLES.get(status, _GENERIC_TITLE)


def status_explanation(status: int) -> str:
    """The msgid of an error page's advice."""
    return _STATUS_EXPLANATIONS.get(status, _GENERIC_EXPLANATION)


#: What a refused value in an address or a query is called, for the message that names it.
FIELD_LABELS: dict[str, str] = {
    "tenant_id": N_("The tenant"),
    "user_id": N_("The user"),
    "key_id": N_("The API key"),
    "binding_id": N_("The role binding"),
    "q": N_("The search text"),
    "status": N_("The status"),
    "date": N_("The date"),
    "business_date": N_("The date"),
    "show": N_("The choice of what to show"),
    "lang": N_("The language"),
    "next": N_("The page to return to"),
    "limit": N_("The number of rows"),
    "offset": N_("The starting row"),
}
_SOME_VALUE = N_("A value")


def add_field_labels(more: Mapping[str, str]) -> None:
    """Add a module's field labels (``Module.labels``); a name core already labels keeps its own."""
    for name, label in more.items():
        FIELD_LABELS.setdefault(name, label)


_SOME_VALUE_IN_ADDRESS = N_("A value in the address")
#: Where a value is part of the address (the path, or the query after "?"); a form's or a
#: document's fields are not.
_ADDRESS = ("path", "query")

#: Validation errors by kind (pydantic's ``type``), as sentences naming the field.
VALIDATION_MESSAGES: dict[str, str] = {
    "uuid_parsing": N_("%(field)s is not a valid identifier."),
    "uuid_type": N_("%(field)s is not a valid identifier."),
    "missing": N_("%(field)s is missing."),
    "string_too_long": N_("%(field)s is too long."),
    "string_too_short": N_("%(field)s is too short."),
    "int_parsing": N_("%(field)s must be a whole number."),
    "int_type": N_("%(field)s must be a whole number."),
    "greater_than_equal": N_("%(field)s is too small."),
    "greater_than": N_("%(field)s is too small."),
    "less_than_equal": N_("%(field)s is too large."),
    "less_than": N_("%(field)s is too large."),
    "date_from_datetime_parsing": N_("%(field)s must be a date written as YYYY-MM-DD."),
    "date_parsing": N_("%(field)s must be a date written as YYYY-MM-DD."),
    "date_type": N_("%(field)s must be a date written as YYYY-MM-DD."),
}
_INVALID_VALUE = N_("%(field)s is not valid.")


#: The same errors of a value in the address, saying so.
ADDRESS_MESSAGES: dict[str, str] = {
    "uuid_parsing": N_("%(field)s in the address is not a valid identifier."),
    "uuid_type": N_("%(field)s in the address is not a valid identifier."),
}


def _in_address(location: tuple[object, ...] | list[object]) -> bool:
    return bool(location) and location[0] in _ADDRESS


def field_label(location: tuple[object, ...] | list[object], kind: str = "") -> str:
    """The msgid naming the field at a validation error's location (its last named part); a
    field without a name of its own is "a value", "in the address" when it is there and the
    message of ``kind`` does not say so already."""
    names = [str(part) for part in location if isinstance(part, str)]
    names = [n for n in names if n not in ("path", "query", "body", "header", "cookie")]
    if names and names[-1] in FIELD_LABELS:
        return FIELD_LABELS[names[-1]]
    if _in_address(location) and kind not in ADDRESS_MESSAGES:
        return _SOME_VALUE_IN_ADDRESS
    return _SOME_VALUE


def validation_message(kind: str, location: tuple[object, ...] | list[object] = ()) -> str:
    """The msgid of a validation error of ``kind`` at ``location`` (with a ``%(field)s``
    placeholder); "in the address" only for a value in the path or the query."""
    if _in_address(location) and kind in ADDRESS_MESSAGES:
        return ADDRESS_MESSAGES[kind]
    return VALIDATION_MESSAGES.get(kind, _INVALID_VALUE)
