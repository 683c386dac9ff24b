"""Networks generated once per test session by SUMO's netgenerate (no map data is needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicloud.traffic import sumo
from civicloud.traffic.network import Network, read_network


@pytest.fixture(scope="session")
def net_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nets")
    return {name: sumo.generate(name, folder / f"{name}.net.xml") for name in sumo.LAYOUTS}


class _Networks(dict[str, Network]):
    """The networks by layout, with a short repr (hypothesis prints the arguments it failed on)."""

    def __repr__(self) -> str:
        return f"<networks {sorted(self)}>"


@pytest.fixture(scope="session")
def networks(net_files: dict[str, Path]) -> dict[str, Network]:
    return _Networks({name: read_network(path) for name, path in net_files.items()})
