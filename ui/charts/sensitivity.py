"""The Which parts tab's charts: the sensitivity map (each part quantized alone, a cell per scheme and width), and
size against measured Δ loss for the uniform choices, the best mixes of their sizes and the pick for a budget.

Unlike the other charts, the map writes its number on every cell: it is read cell by cell, as a table is, and the
colour alone cannot tell +0.003 from +0.03. It is one single-view chart (a row per scheme and part, a header row per
scheme), so that it stretches to the page's width on a projector and on a phone alike; its text shortens where the
plot is narrow. The map's takeaway is ``sensitivity.takeaway``: the command line prints the same sentence."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from wlm.low_bits import DEFAULT_GROUP_SIZE, SCHEMES, scheme_label
from wlm.sensitivity import REAL, Mix, part_label, takeaway

from .style import ACCENT, MIN_HEIGHT, REAL_INT8, REFERENCE, SCHEME_COLORS, TALL, Figure, readable

NUMBERS = {"delta_loss": "Δ loss", "kl_mean": "mean KL"}  # what a map may write on its cells
REAL_COLUMN = "int8"
ROW_PX = 30  # a row of cells: 14 px text with room above and below
NARROW_PX = 560  # a plot narrower than this (a phone) writes the short forms
KL_FLOOR = 1e-9  # a mean KL of 0 (the part's rounding changed nothing) is drawn at the scale's bottom
DARK_FROM = 0.6  # where on the log colour scale a cell is dark enough for white text
# Where the trade-off's symlog axis turns from linear to logarithmic: below a loss change a class would notice.
SYMLOG_NATS = 0.01
DELTA_TICKS = (-1, -0.1, -0.01, 0, 0.01, 0.1, 1, 10)
MIX, PICK = "best mix", "the pick"  # the legend's names: short, so two columns of it fit a phone


def _block(scheme: str, group_size: int) -> str:
    return scheme_label(scheme, int(group_size) or DEFAULT_GROUP_SIZE) if "per-group" in scheme else scheme


def _short_delta(delta: float) -> str:
    text = f"{delta:+.3f}" if abs(delta) < 1 else f"{delta:+.2f}"
    return text.replace("0.", ".", 1) if abs(delta) < 1 else text


def _exponent(value: float, digits: int) -> str:
    """``3.4e-6`` rather than Python's ``3.4e-06``."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def map_grid(table: pd.DataFrame) -> pd.DataFrame:
    """The map as drawn: a row per scheme block and part (``row``, in ``SCHEMES`` then model order), a column per
    width (``real int8`` at the left of every block, as the 8-bit cells' reference), and a header row per block."""
    real = table[table["scheme"] == REAL]
    simulated = table[table["scheme"] != REAL].copy()
    simulated["block"] = [_block(s, g) for s, g in zip(simulated["scheme"], simulated["group_size"])]
    order = {scheme: i for i, scheme in enumerate(SCHEMES)}
    blocks = list(dict.fromkeys(simulated.sort_values("scheme", key=lambda c: c.map(order), kind="stable")["block"]))
    part_order = list(dict.fromkeys(table["part"]))
    frames = []
    for block in blocks:
        cells = pd.concat([real, simulated[simulated["block"] == block].drop(columns="block")])
        frames.append(cells.assign(block=block, header=False))
        frames.append(pd.DataFrame({"block": [block], "header": [True], "part": [""]}))
    grid = pd.concat(frames, ignore_index=True)
    grid["label"] = [part_label(p) if p else "" for p in grid["part"]]
    grid["row"] = grid["block"] + "|" + grid["label"]
    grid["column"] = [REAL_COLUMN if s == REAL else ("" if h else str(int(b)))
                      for s, b, h in zip(grid["scheme"], grid["bits"].fillna(0), grid["header"])]
    grid["scheme shown"] = [REAL if s == REAL else b for s, b in zip(grid["scheme"], grid["block"])]
    cells = ~grid["header"]
    kl = grid.loc[cells, "kl_mean"].astype(float)
    positive = kl[kl > 0]
    low = float(positive.min()) if len(positive) else KL_FLOOR
    high = max(float(kl.max()), low * 10)
    grid.loc[cells, "kl_shown"] = kl.clip(lower=low)
    span = math.log10(high) - math.log10(low)
    grid.loc[cells, "dark"] = [(math.log10(k) - math.log10(low)) / span >= DARK_FROM
                               for k in grid.loc[cells, "kl_shown"]]
    delta = grid.loc[cells, "delta_loss"].astype(float)
    grid.loc[cells, "delta_short"] = [_short_delta(d) for d in delta]
    grid.loc[cells, "delta_long"] = [f"{d:+.4f}" for d in delta]
    grid.loc[cells, "kl_short"] = [_exponent(k, 0) for k in kl]
    grid.loc[cells, "kl_long"] = [_exponent(k, 1) for k in kl]
    grid.attrs["rows"] = [f"{b}|{label}" for b in blocks
                          for label in [""] + [part_label(p) for p in part_order]]
    grid.attrs["columns"] = [REAL_COLUMN] + [str(b) for b in sorted(simulated["bits"].unique(), reverse=True)]
    grid.attrs["kl_domain"] = [low, high]
    return grid


def map_chart(table: pd.DataFrame, number: str = "delta_loss") -> Figure:
    """The sensitivity map (``sensitivity.sensitivity``): a row per part in each scheme's block, a column per width
    (8 at the left) after the real int8 cell, coloured by mean KL on a log scale, ``number`` written on each cell."""
    if number not in NUMBERS:
        raise ValueError(f"number {number!r}: one of {', '.join(NUMBERS)}")
    grid = map_grid(table)
    rows, columns = grid.attrs["rows"], grid.attrs["columns"]
    short, long = ("delta_short", "delta_long") if number == "delta_loss" else ("kl_short", "kl_long")
    y = alt.Y("row:N", sort=rows, title=None, scale=alt.Scale(domain=rows, paddingInner=0.06),
              axis=alt.Axis(labelExpr="split(datum.value, '|')[1]", ticks=False, domain=False, labelPadding=6))
    x = alt.X("column:N", sort=columns, scale=alt.Scale(domain=columns, paddingInner=0.04),
              title="weight bits (int8: torch's real kernels)",
              axis=alt.Axis(orient="top", labelAngle=0, ticks=False, domain=False,
                            labelExpr=f"datum.value == '{REAL_COLUMN}' ? (width < {NARROW_PX} ? 'int8' : "
                                      f"'real int8') : datum.value"))
    cells = grid[~grid["header"]]
    tooltip = [alt.Tooltip("label:N", title="part"), alt.Tooltip("scheme shown:N", title="scheme"),
               alt.Tooltip("bits:Q", title="bits"),
               alt.Tooltip("delta_loss:Q", format="+.4f", title="Δ loss (nats)"),
               alt.Tooltip("kl_mean:Q", format=".2e", title="mean KL (nats)"),
               alt.Tooltip("top1_agreement:Q", format=".1%", title="top-1 agreement"),
               alt.Tooltip("size_mb:Q", format=",.3f", title="the part stored (MB)"),
               alt.Tooltip("tokens:Q", format=",", title="predictions")]
    base = alt.Chart(cells).encode(x=x, y=y)
    rects = base.mark_rect().encode(
        color=alt.Color("kl_shown:Q", title="mean KL (nats, log scale)",
                        scale=alt.Scale(type="log", scheme="orangered", domain=grid.attrs["kl_domain"]),
                        legend=alt.Legend(orient="bottom", direction="horizontal", gradientLength=260,
                                          format=".0e", tickCount=5)),
        stroke=alt.condition(alt.datum.scheme == REAL, alt.value(REAL_INT8), alt.value(None)),
        strokeWidth=alt.condition(alt.datum.scheme == REAL, alt.value(1.5), alt.value(0)),
        tooltip=tooltip)
    # Two texts, one shown at a time: a condition cannot choose between two fields, but an opacity can follow the
    # plot's width.
    texts = [base.mark_text(fontSize=size, baseline="middle", opacity=alt.ExprRef(f"width {shown} ? 1 : 0")).encode(
        text=f"{field}:N", color=alt.condition(alt.datum.dark, alt.value("white"), alt.value("black")),
        tooltip=tooltip) for field, size, shown in ((short, 11, f"< {NARROW_PX}"), (long, 14, f">= {NARROW_PX}"))]
    headers = alt.Chart(grid[grid["header"]]).mark_text(align="left", baseline="middle", dy=2, fontSize=15,
                                                        fontWeight="bold").encode(
        y=y, x=alt.value(0), text="block:N")
    # The height holds the axis over the cells and the legend under them as well (Streamlit fits the whole).
    chart = alt.layer(rects, *texts, headers).properties(height=max(MIN_HEIGHT, ROW_PX * len(rows)) + 110)
    return Figure(readable(chart), takeaway(table))


# --- the trade-off ---------------------------------------------------------------------------------------------

def mb(size: float) -> str:
    """A size in MB as the page writes it: one decimal for a real model, three figures for a tiny one."""
    return f"{size:,.1f}" if size >= 10 else f"{size:.3g}"


def tradeoff_points(trade: pd.DataFrame) -> pd.DataFrame:
    """The trade-off's points as drawn: each with its ``series`` (a uniform choice's scheme, 'best mix of that
    size', 'the pick') and the words of its tooltip. A mix several uniform choices share is drawn once."""
    points = trade.copy()
    uniform = points["kind"] == "uniform"
    points["scheme"] = points["scheme"].where(uniform, "").fillna("")
    points["series"] = [f"all {_block(s, g or 0)}" if u else (MIX if k == "mix" else PICK)
                        for s, g, u, k in zip(points["scheme"], points["group_size"], uniform, points["kind"])]
    mixes = points[points["kind"] == "mix"].drop_duplicates(["label"]).sort_values("size_mb")
    return pd.concat([points[uniform], mixes, points[points["kind"] == "pick"]], ignore_index=True)


def _ticks(values: pd.Series) -> list[float]:
    low, high = float(values.min()), float(values.max())
    return [t for t in DELTA_TICKS if low - 1e-12 <= t <= high] or [0]


def tradeoff_chart(trade: pd.DataFrame, mix: Mix, budget_mb: float) -> Figure:
    """Stored size against measured Δ loss (symlog): every uniform choice of the map coloured by its scheme, the
    best mix at each of their sizes as a line, the pick ringed, and the budget as a dashed rule."""
    points = tradeoff_points(trade)
    uniform = points[points["kind"] == "uniform"]
    schemes = dict(zip(uniform["series"], uniform["scheme"]))
    series = list(schemes) + [MIX, PICK]
    colors = [SCHEME_COLORS.get(s, REFERENCE) for s in schemes.values()]
    color = alt.Color("series:N", title=None, sort=series, scale=alt.Scale(domain=series,
                                                                         range=colors + [REFERENCE, ACCENT]),
                      legend=alt.Legend(orient="bottom", direction="horizontal", columns=2, symbolLimit=0))
    sizes = pd.concat([points["size_mb"], pd.Series([budget_mb])])
    x = alt.X("size_mb:Q", title="stored size (MB)", scale=alt.Scale(zero=False, nice=False,
                                                                     domain=[0, float(sizes.max()) * 1.05]))
    y = alt.Y("delta_loss:Q", title="Δ loss (nats), measured",
              scale=alt.Scale(type="symlog", constant=SYMLOG_NATS, nice=False, padding=12,
                              domain=[min(float(points["delta_loss"].min()), 0.0),
                                      max(float(points["delta_loss"].max()), SYMLOG_NATS)]),
              axis=alt.Axis(values=_ticks(points["delta_loss"]), format="~g"))
    tooltip = [alt.Tooltip("label:N", title="choice"), alt.Tooltip("size_mb:Q", format=",.2f", title="stored (MB)"),
               alt.Tooltip("delta_loss:Q", format="+.4f", title="Δ loss, measured"),
               alt.Tooltip("predicted_delta_loss:Q", format="+.4f", title="Δ loss, the map's sum"),
               alt.Tooltip("tokens:Q", format=",", title="predictions")]
    line = alt.Chart(points[points["kind"] == "mix"]).mark_line(color=REFERENCE, strokeWidth=2,
                                                                strokeDash=[5, 3]).encode(x=x, y=y)
    dots = alt.Chart(points[points["kind"] != "pick"]).mark_point(filled=True, size=90, opacity=0.9).encode(
        x=x, y=y, color=color, shape=alt.condition(alt.datum.kind == "mix", alt.value("square"),
                                                   alt.value("circle")),
        tooltip=tooltip)
    picked = alt.Chart(points[points["kind"] == "pick"]).mark_point(filled=True, size=260, opacity=1, stroke="white",
                                                                    strokeWidth=1.5).encode(
        x=x, y=y, color=color, tooltip=tooltip)
    budget = alt.Chart(pd.DataFrame({"size_mb": [budget_mb], "line": ["size budget"]})).mark_rule(
        color=ACCENT, strokeDash=[6, 4]).encode(x="size_mb:Q", tooltip=[alt.Tooltip("line:N", title="line"),
                                                                       alt.Tooltip("size_mb:Q", format=",.2f",
                                                                                   title="MB")])
    chart = alt.layer(budget, line, dots, picked).properties(height=TALL + 160)  # the plot, its axes, the legend
    return Figure(readable(chart), tradeoff_takeaway(trade, mix) + " The dashed line is the budget; the Δ loss axis "
                  f"is linear within ±{SYMLOG_NATS:g} nats and logarithmic beyond.")


def tradeoff_takeaway(trade: pd.DataFrame, mix: Mix) -> str:
    """The pick against the nearest uniform choice of no smaller size, measured on the same tokens."""
    uniform = trade[trade["kind"] == "uniform"]
    measured = (f"The pick takes {mb(mix.size_mb)} MB and changes the loss by {mix.delta_loss:+.4f} nats (the map "
                f"predicted {mix.predicted_delta_loss:+.4f}, its parts' changes added up)")
    at_least = uniform[uniform["size_mb"] >= mix.size_mb - 1e-9]
    if at_least.empty:
        largest = uniform.loc[uniform["size_mb"].idxmax()]
        return (f"{measured}; every uniform choice of the map is smaller, the largest being {largest['label']} "
                f"({mb(largest['size_mb'])} MB, {largest['delta_loss']:+.4f}).")
    near = at_least.loc[at_least["size_mb"].idxmin()]
    gap, room = float(near["delta_loss"]) - mix.delta_loss, float(near["size_mb"]) - mix.size_mb
    room_text = "at about the same size" if room < 0.01 * near["size_mb"] else f"in {mb(room)} MB less"
    verdict = (f"mixing widths part by part costs {gap:.4f} nats less, {room_text}" if gap >= 0 else
               f"here the uniform choice costs {-gap:.4f} nats less, for {mb(room)} MB more")
    return (f"{measured}; the nearest uniform choice at least as big, {near['label']} ({mb(near['size_mb'])} MB), "
            f"changes it by {near['delta_loss']:+.4f}: {verdict}.")
