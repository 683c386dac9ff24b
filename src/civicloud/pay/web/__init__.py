"""Pay's pages, in Chinese and English: the citizens' bill payment and the operators' console.

``router`` holds every page (none in the OpenAPI schema); ``civicloud.app`` mounts it. The
templates live in ``civicloud/pay/templates/pay/`` and extend the shell's ``base.html``.
"""

from fastapi import APIRouter

from civicloud.pay.web import books, citizen, console, dashboard

router = APIRouter(include_in_schema=False)
router.include_router(citizen.router)
router.include_router(console.router)
router.include_router(books.router)
router.include_router(dashboard.router)

__all__ = ["router"]
