"""One weight's values as bars from ``wlm``'s bins, its grid's levels drawn over them: Fidelity and Fewer bits."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from .style import ACCENT, FLOAT


def grid_histogram(bins: pd.DataFrame, levels: np.ndarray, name: str, *, rule_width: float = 1.0,
                   rule_opacity: float = 0.35) -> alt.LayerChart:
    """Bars from ``fidelity.histogram_bins`` (start, end, weights) and a rule per level (none when empty).

    The callers pick the rules' weight: hundreds of int8 levels must stay faint enough to see the bars through."""
    bars = alt.Chart(bins).mark_bar(opacity=0.8, color=FLOAT).encode(
        x=alt.X("start:Q", title=f"{name} value"), x2="end:Q", y=alt.Y("weights:Q", title="weights"),
        y2=alt.datum(0),
        tooltip=[alt.Tooltip("start:Q", format=".4f"), alt.Tooltip("end:Q", format=".4f"), "weights:Q"])
    layers = [bars]
    if len(levels):
        grid = pd.DataFrame({"level": np.asarray(levels, dtype=float)})
        layers.append(alt.Chart(grid).mark_rule(color=ACCENT, strokeWidth=rule_width, opacity=rule_opacity).encode(
            x="level:Q", tooltip=[alt.Tooltip("level:Q", format=".5f")]))
    return alt.layer(*layers)
