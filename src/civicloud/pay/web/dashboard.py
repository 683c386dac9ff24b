"""The operator's daily dashboard: one day's takings, success rate, providers and refunds, drawn
as charts (``civicloud.web.charts``) with the figures beside them.

The day is a date in the installation's zone (today by default, another one by the page's GET
form); the figures are ``pay.dashboard.day_dashboard``'s, over the billers the reader may see.
Someone who may read no payment is told so, not shown zeros.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from civicloud.core.dates import DateOutOfRange, parse_date
from civicloud.core.errors import PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.zones import offset_label
from civicloud.pay import dashboard
from civicloud.pay.web.views import display_zone, page
from civicloud.web.deps import SessionDep
from civicloud.web.pages.guards import ConsoleActorDep

router = APIRouter(prefix="/console/pay", include_in_schema=False)

_DATE_HINT = N_("Enter a date between 2000-01-01 and 2100-12-31 as YYYY-MM-DD.")


@router.get("/dashboard", name="pay.page.console_dashboard")
def dashboard_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    day: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """One day's takings, success rate, payments by provider and refunds, as charts."""
    zone = display_zone(request)
    today = dashboard.today_in(zone)
    chosen, error = today, None
    if day.strip():
        try:
            chosen = parse_date(day)
        except DateOutOfRange:
            error = _DATE_HINT
    try:
        figures = dashboard.day_dashboard(session=session, actor=actor, day=chosen, zone=zone)
    except PermissionDenied:
        figures = None
    return page(
        request,
        "pay/console/dashboard.html",
        {
            "section": "pay",
            "pay_tab": "dashboard",
            "figures": figures,
            "day": chosen,
            "today": today,
            # The zone's offset at the day's start, beside the hours: "UTC+8".
            "offset": offset_label(dashboard.day_bounds(chosen, zone)[0].astimezone(zone)),
            "typed": day if error else chosen.isoformat(),
            "date_error": error,
        },
    )
