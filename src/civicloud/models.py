"""Every table of every package, imported in one place (for migrations and tests)."""

from civicloud.core.models import Base
from civicloud.pay import models as pay_models

__all__ = ["Base", "pay_models"]
