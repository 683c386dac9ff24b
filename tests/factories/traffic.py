"""Traffic's test data: turning-movement counts for a generated network."""

from __future__ import annotations

from civicloud.traffic.network import Network

HEADER = "interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count\n"


def counts_csv(net: Network, main: int = 120, side: int = 30) -> str:
    """Two hours of 15-minute counts: the arterial (east-west) busy, the side streets quiet."""
    rows = []
    for signal in net.signals.values():
        for (f, t), links in signal.movements().items():
            arterial = net.edges[f].shape[0][1] == net.edges[f].shape[-1][1]
            base = main if arterial else side
            count = base if links[0].dir == "s" else base // 5
            rows += [
                f"{b},{b + 900},{signal.id},{f},{t},{links[0].dir},{count}"
                for b in range(0, 7200, 900)
            ]
    return HEADER + "\n".join(rows) + "\n"
