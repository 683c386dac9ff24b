"""The importer over networks netgenerate makes, and over files that are not networks."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from civicloud.traffic import sumo
from civicloud.traffic.errors import NetworkUnreadable, NoSignals
from civicloud.traffic.network import GREEN, Network, read_network


def test_signals_links_programs_and_edges(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    assert list(net.signals) == ["A0"]
    signal = net.signals["A0"]
    # Four arms of three lanes (right and through, through, left): 16 links, one state each.
    assert signal.size == len(signal.program.phases[0].state) == 16
    assert sorted({link.index for link in signal.links}) == list(range(16))
    assert {link.dir for link in signal.links} == {"s", "l", "r"}
    assert signal.program.cycle == 90
    assert [p.duration for p in signal.program.phases] == [33, 3, 6, 3, 33, 3, 6, 3]
    assert all(edge.length > 0 and edge.lanes >= 1 for edge in net.edges.values())
    assert all(edge.speed == pytest.approx(13.89) for edge in net.edges.values())
    assert signal.width > 10
    xmin, ymin, xmax, ymax = net.bounds
    assert xmin < signal.x < xmax
    assert ymin < signal.y < ymax


def test_foes_say_which_links_cross(networks: dict[str, Network]) -> None:
    signal = networks["junction"].signals["A0"]
    links = {(link.from_edge, link.dir): link.index for link in signal.links}
    through = [i for (_, d), i in links.items() if d == "s"]
    # A through movement crosses the two through movements of the cross street...
    cross = [j for j in through if signal.conflict(through[0], j)]
    assert len(cross) >= 2
    # ...and the network's own program never shows G to two of them at once.
    for phase in signal.program.phases:
        greens = [i for i, c in enumerate(phase.state) if c == "G"]
        assert not any(signal.conflict(a, b) for a in greens for b in greens if a < b)
    assert all(a < b for a, b in signal.foes)
    assert any(c in GREEN for c in signal.program.phases[0].state)


def test_every_layout_reads(networks: dict[str, Network]) -> None:
    assert len(networks["corridor"].signals) == 3
    assert len(networks["grid"].signals) == 9


def test_a_gzipped_network_reads(net_files: dict[str, Path], tmp_path: Path) -> None:
    packed = tmp_path / "junction.net.xml.gz"
    packed.write_bytes(gzip.compress(net_files["junction"].read_bytes()))
    assert list(read_network(packed).signals) == ["A0"]


def test_a_network_without_signals_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "plain.net.xml"
    sumo.run(
        [sumo.binary("netgenerate"), "--grid", "--grid.number", "2", "-o", out],
        what="netgenerate",
    )
    with pytest.raises(NoSignals) as caught:
        read_network(out)
    assert "plain.net.xml" in caught.value.detail


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_a_truncated_file_is_refused(
    net_files: dict[str, Path], tmp_path: Path, cut: float
) -> None:
    data = net_files["junction"].read_bytes()
    broken = tmp_path / "broken.net.xml"
    broken.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(NetworkUnreadable) as caught:
        read_network(broken)
    assert caught.value.code == "traffic.network_unreadable"
    assert "broken.net.xml" in caught.value.detail


@pytest.mark.parametrize(
    "content", [b"", b"not xml at all", b"<additional/>", b"\x00\xff\xfe", b"<net><edge"]
)
def test_files_that_are_no_network_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.net.xml"
    path.write_bytes(content)
    with pytest.raises((NetworkUnreadable, NoSignals)):
        read_network(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NetworkUnreadable):
        read_network(tmp_path / "nowhere.net.xml")
