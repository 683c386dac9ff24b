"""The throwaway module's part of the authorisation matrix: its one route takes a tenant's id,
which the core's spec fills, so it needs nothing of its own."""

from __future__ import annotations

from tests.functional.matrix import MatrixSpec

SPEC = MatrixSpec(name="throwaway")
