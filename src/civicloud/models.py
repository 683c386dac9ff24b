"""Every table of core and of every listed module, imported in one place (for migrations and tests)."""

import importlib

from civicloud.app import MODULES
from civicloud.core.models import Base

for _module in MODULES:
    for _tables in _module.models:
        importlib.import_module(_tables)

__all__ = ["Base"]
