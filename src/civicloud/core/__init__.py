"""civicloud core: settings, database, errors, events, and the tenants, regions, identity,
roles and audit that every module stands on.

Core imports no web framework and no module; modules import core.
"""
