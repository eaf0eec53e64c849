"""Small plotting helpers shared by the apps."""

from __future__ import annotations

from typing import Sequence


def depth_ticks(ax, depths: Sequence[int]) -> None:
    """Depth values as the ticks of a log x axis (no minor labels)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(list(depths), [str(x) for x in depths])
    ax.xaxis.set_minor_formatter(NullFormatter())
