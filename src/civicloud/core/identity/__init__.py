"""Identity: users (argon2id passwords), API keys (hashed, shown once) and browser sessions."""

from civicloud.core.identity.models import ApiKey, User, WebSession
from civicloud.core.identity.passwords import Passwords
from civicloud.core.identity.schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from civicloud.core.identity.service import (
    IssuedKey,
    authenticate_password,
    create_user,
    end_web_session,
    get_api_key_by_prefix,
    get_user_by_username,
    get_user_or_raise,
    issue_api_key,
    list_api_keys,
    list_users,
    resolve_api_key,
    resolve_web_session,
    revoke_api_key,
    start_web_session,
    touch_api_key,
    update_user,
)

__all__ = [
    "ApiKey",
    "ApiKeyCreate",
    "ApiKeyIssued",
    "ApiKeyRead",
    "IssuedKey",
    "Passwords",
    "User",
    "UserCreate",
    "UserRead",
    "UserUpdate",
    "WebSession",
    "authenticate_password",
    "create_user",
    "end_web_session",
    "get_api_key_by_prefix",
    "get_user_by_username",
    "get_user_or_raise",
    "issue_api_key",
    "list_api_keys",
    "list_users",
    "resolve_api_key",
    "resolve_web_session",
    "revoke_api_key",
    "start_web_session",
    "touch_api_key",
    "update_user",
]
