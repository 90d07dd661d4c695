"""``ss``-like text table of a stack's TCP listeners and connections.

:func:`format_tcp_listing` turns the dicts of :meth:`ioth.stack.stack.Stack.tcp_connections`
into aligned text; ``ioth node`` prints it on SIGUSR1 and (with ``--stats``) at exit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: column title -> row key
COLUMNS: tuple[tuple[str, str], ...] = (
    ("State", "state"), ("Recv-Q", "recv_queue"), ("Send-Q", "send_queue"),
    ("Local", "local"), ("Peer", "remote"), ("CC", "cc"), ("Cwnd", "cwnd"),
    ("Ssthresh", "ssthresh"), ("SRTT(ms)", "srtt"), ("RTTVar(ms)", "rttvar"),
    ("RTO(ms)", "rto"), ("Retrans", "retransmissions"),
)
_MS = {"srtt", "rttvar", "rto"}


def _cell(key: str, row: Mapping[str, Any]) -> str:
    if row.get("state") == "LISTEN":  # listeners: Recv-Q is the accept queue, Send-Q the backlog
        if key == "recv_queue":
            return str(row.get("accept_queue", 0))
        if key == "send_queue":
            return str(row.get("backlog", 0))
    value = row.get(key)
    if value is None:
        return "-"
    if key in _MS:
        return f"{float(value) * 1000:.1f}"
    return str(value)


def format_tcp_listing(rows: Iterable[Mapping[str, Any]]) -> str:
    """An aligned ``ss``-like table (header line first, no trailing newline) of listing rows."""
    table = [[title for title, _ in COLUMNS]]
    table.extend([_cell(key, row) for _, key in COLUMNS] for row in rows)
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join(
        " ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    )
