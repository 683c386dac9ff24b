"""Core's API routers, mounted under ``/api/v1`` by :mod:`civicloud.app`."""

from fastapi import APIRouter

from civicloud.web.api import api_keys, audit, regions, roles, tenants, users

api_router = APIRouter()
for _module in (tenants, regions, users, roles, api_keys, audit):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
