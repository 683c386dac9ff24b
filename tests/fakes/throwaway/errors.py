"""The throwaway module's errors."""

from civicloud.core.errors import NotFound


class ItemNotFound(NotFound):
    """No such throwaway item."""

    code = "throwaway.item_not_found"
    title = "Throwaway item not found"
