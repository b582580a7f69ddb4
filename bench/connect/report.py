"""What the connect benchmark prints and writes: per-pair figures, a region x region table, a heatmap, the summary."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.connect.baseline import BaselineResult
from bench.connect.duet_calls import STAGES_AFTER_MATCH, DuetSample
from bench.connect.pairs import PairPath

__all__ = ["PairFigures", "pair_figures", "percentile", "region_table", "stage_table", "summary", "write_heatmap"]


# A 10 ms timer of the load process waking this much late means the process itself fell behind.
STALL_MS = 50.0


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (inclusive method: within the samples' range, exact for one sample)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class PairFigures:
    path: PairPath
    duet: list[float]  # connect_ms of every connected Duet call (find and next)
    baseline: list[float]  # connect_ms of every connected baseline call
    failed: int
    stages: dict[str, float]  # median ms after the match over the pair's calls, slower side

    @property
    def p95(self) -> float:
        return percentile(self.duet, 95)

    @property
    def baseline_p95(self) -> float:
        return percentile(self.baseline, 95)

    @property
    def floor_ms(self) -> float:
        return self.path.floor().total_ms

    @property
    def ratio_to_floor(self) -> float:
        return self.p95 / self.floor_ms


def pair_figures(
    paths: Sequence[PairPath], duet: Sequence[DuetSample], baseline: Sequence[BaselineResult]
) -> list[PairFigures]:
    out = []
    for path in paths:
        samples = [s for s in duet if s.pair == path.key]
        base = [b for b in baseline if b.pair == path.key]
        ok = [s for s in samples if s.connect_ms is not None]
        stages = {
            name: statistics.median(s.stages[name] for s in ok if name in s.stages)
            for name in STAGES_AFTER_MATCH
            if any(name in s.stages for s in ok)
        }
        out.append(
            PairFigures(
                path=path,
                duet=[s.connect_ms for s in ok if s.connect_ms is not None],
                baseline=[b.connect_ms for b in base if b.connect_ms is not None],
                failed=sum(1 for s in samples if s.connect_ms is None) + sum(1 for b in base if b.connect_ms is None),
                stages=stages,
            )
        )
    return out


def _cell(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def region_table(
    regions: Sequence[str], short: Mapping[str, str], values: Mapping[tuple[str, str], float], title: str
) -> str:
    """A region x region table (symmetric; each pair measured once, shown both ways)."""
    width = 6
    lines = [title, " " * width + "".join(f"{short[r]:>{width}}" for r in regions)]
    for a in regions:
        cells = []
        for b in regions:
            value = values.get((a, b), values.get((b, a)))
            cells.append(f"{_cell(value):>{width}}")
        lines.append(f"{short[a]:<{width}}" + "".join(cells))
    return "\n".join(lines)


def stage_table(figures: Sequence[PairFigures], worst: int) -> str:
    """The slowest pairs with the median stages of their calls (ms after the match) and their floor."""
    ranked = sorted((f for f in figures if f.duet), key=lambda f: f.p95, reverse=True)[:worst]
    header = f"{'pair':<28}{'route ms':>9}{'floor':>7}{'p95':>7}{'base p95':>9}" + "".join(
        f"{name:>21}" for name in STAGES_AFTER_MATCH
    )
    lines = [header, "-" * len(header)]
    for f in ranked:
        p = f.path
        name = f"{p.region_a}-{p.region_b}"[:27]
        lines.append(
            f"{name:<28}{p.route_rtt_ms / 2:>9.0f}{f.floor_ms:>7.0f}{f.p95:>7.0f}{_cell(f.baseline_p95):>9}"
            + "".join(f"{_cell(f.stages.get(s)):>21}" for s in STAGES_AFTER_MATCH)
        )
    lines.append("(route ms: one backbone trip; stages: median ms after the match of the slower side)")
    return "\n".join(lines)


def summary(
    figures: Sequence[PairFigures], duet: Sequence[DuetSample], baseline: Sequence[BaselineResult]
) -> dict[str, float | int | None]:
    """The JSON line's figures (defined in docs/benchmarks.md).

    The headline figures are over the pairs of two different regions; a region's
    pair with itself (both users on one edge, no backbone) is reported apart.
    """
    cross = [f for f in figures if f.path.region_a != f.path.region_b]
    same = [f for f in figures if f.path.region_a == f.path.region_b and f.duet]
    measured = [f for f in cross if f.duet]
    p95s = [f.p95 for f in measured]
    base = [f.baseline_p95 for f in cross if f.baseline]
    floors = {f.path.key: f.floor_ms for f in cross}
    cross_calls = [s for s in duet if s.pair in floors]
    nexts = [s for s in cross_calls if s.how == "next" and s.connect_ms is not None]
    worst = max(p95s) if p95s else None
    base_worst = max(base) if base else None

    def rounded(x: float | None, digits: int = 1) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "pairs": len(cross),
        "calls": len(cross_calls),
        "worst_pair_p95_ms": rounded(worst),
        "median_pair_p95_ms": rounded(statistics.median(p95s)) if p95s else None,
        "baseline_worst_pair_p95_ms": rounded(base_worst),
        "speedup_worst": rounded(base_worst / worst, 2) if worst and base_worst else None,
        "worst_ratio_to_floor": rounded(max(f.ratio_to_floor for f in measured), 2) if measured else None,
        "next_p95_ms": rounded(percentile([s.connect_ms for s in nexts if s.connect_ms is not None], 95))
        if nexts
        else None,
        # What physics allows next_p95_ms: the same percentile of those calls' own pairs' floors.
        "next_floor_p95_ms": rounded(percentile([floors[s.pair] for s in nexts], 95)) if nexts else None,
        # Calls during which the load process itself stalled (docs/benchmarks.md, "The tail").
        "stalled_calls": sum(1 for s in cross_calls if s.loop_lag_ms > STALL_MS),
        "same_region_pairs": len(same),
        "same_region_worst_p95_ms": rounded(max(f.p95 for f in same)) if same else None,
        "failed_calls": sum(1 for s in duet if s.connect_ms is None) + sum(1 for b in baseline if b.connect_ms is None),
    }


def write_heatmap(
    path: Path,
    regions: Sequence[str],
    short: Mapping[str, str],
    duet_p95: Mapping[tuple[str, str], float],
    baseline_p95: Mapping[tuple[str, str], float],
) -> None:
    """A PNG: per-pair p95 of Duet and of the baseline side by side, on one colour scale, cells labelled."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np

    def grid(values: Mapping[tuple[str, str], float]) -> np.ndarray:
        m = np.full((len(regions), len(regions)), np.nan)
        for i, a in enumerate(regions):
            for j, b in enumerate(regions):
                v = values.get((a, b), values.get((b, a)))
                if v is not None:
                    m[i, j] = v
        return m

    grids = [("Duet: match -> first frame, p95 (ms)", grid(duet_p95))]
    if baseline_p95:
        grids.append(("End-to-end WebRTC baseline, p95 (ms)", grid(baseline_p95)))
    finite = [g[np.isfinite(g)] for _, g in grids]
    vmax = max((float(f.max()) for f in finite if f.size), default=1.0)
    size = 0.55 * len(regions) + 2.5
    fig, axes = plt.subplots(1, len(grids), figsize=(size * len(grids), size), squeeze=False)
    labels = [short[r] for r in regions]
    for ax, (title, m) in zip(axes[0], grids, strict=True):
        image = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(regions)), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(len(regions)), labels, fontsize=8)
        for i in range(len(regions)):
            for j in range(len(regions)):
                if np.isfinite(m[i, j]):
                    dark = m[i, j] < 0.6 * vmax
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if dark else "black")  # fmt: skip
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
