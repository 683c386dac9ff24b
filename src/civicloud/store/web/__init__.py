"""Store's console pages, in Chinese and English: buckets, the object browser with uploads and
share links, access keys, usage and the access log.

``router`` holds every page (none in the OpenAPI schema); ``civicloud.app`` mounts it. The
templates live in ``civicloud/store/templates/store/`` and extend the shell's ``base.html``.
"""

from fastapi import APIRouter

from civicloud.store.web import browser, buckets, keys, usage

router = APIRouter(include_in_schema=False)
router.include_router(buckets.router)
router.include_router(browser.router)
router.include_router(keys.router)
router.include_router(usage.router)

__all__ = ["router"]
