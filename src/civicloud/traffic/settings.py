"""Traffic's settings section, ``CIVICLOUD_TRAFFIC__*`` (assembled into the installation's
settings by the composition root)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TrafficSettings(BaseModel):
    """The Traffic module: where counts are crunched."""

    #: The engine that crunches the stored counts (Parquet): DuckDB in this process, or Apache
    #: Spark for a city that outgrows one machine (``uv sync --group spark``; PySpark and Java 17).
    counts_engine: Literal["duckdb", "spark"] = "duckdb"
    #: Spark's master URL: ``local[N]`` runs it in this process's machine, ``spark://HOST:7077``
    #: on a cluster that reads the same counts directory.
    spark_master: str = Field(default="local[2]", max_length=200)
    #: DuckDB's memory limit for one crunch, MiB.
    duckdb_memory_mib: int = Field(default=2048, ge=16, le=1 << 20)
