"""Pydantic shapes of regions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from civicloud.core.text import DisplayText


class RegionCreate(BaseModel):
    """A new region."""

    code: str = Field(pattern=r"^[a-z]{2}-[a-z0-9]{2,28}$", examples=["cn-dalian"])
    name_zh: DisplayText = Field(min_length=1, max_length=100)
    name_en: DisplayText = Field(min_length=1, max_length=100)
    country_code: str = Field(pattern=r"^[A-Z]{2}$", examples=["CN"])


class RegionRead(BaseModel):
    """A region as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    name_zh: str
    name_en: str
    country_code: str
