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


DAY_S = 86_400


def day_counts_csv(net: Network, level: dict[int, int], *, days: int = 1) -> str:
    """15-minute counts of every movement of every signal over whole days (times in seconds
    from the first midnight): ``level[hour]`` vehicles per through movement in each quarter of
    that hour (a fifth per turn), 10 in the hours not listed."""
    rows = []
    for signal in net.signals.values():
        for (f, t), links in signal.movements().items():
            for day in range(days):
                for begin in range(0, DAY_S, 900):
                    count = level.get(begin // 3600, 10)
                    count = count if links[0].dir == "s" else count // 5
                    start = day * DAY_S + begin
                    rows.append(f"{start},{start + 900},{signal.id},{f},{t},{links[0].dir},{count}")
    return HEADER + "\n".join(rows) + "\n"
