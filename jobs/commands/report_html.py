"""The dataset card as one self-contained HTML file: plots drawn with matplotlib, embedded as PNG data.

Nothing is loaded from the network when the file is opened (Great Expectations' Data Docs load their
CSS and JS from public CDNs and render unstyled on an offline cluster; this page must not). A few lines
of script check, once the page has loaded, that every plot image decoded and count script errors:
`data-plots`, `data-plots-rendered` and `data-js-errors` on <body>, which the browser test reads.
"""
from __future__ import annotations

import base64
import html
import io

import pandas as pd

from jobs.commands.report import HISTOGRAMS, ReportData

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2433; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .sub { color: #5a6478; margin-top: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1.5rem 0; }
.card { background: #f3f5f9; border-radius: 8px; padding: .8rem 1.2rem; min-width: 130px; }
.blocked { background: #fdecea; border-left: 4px solid #c62828; padding: .8rem 1.2rem; }
.card b { display: block; font-size: 1.6rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1.2rem; }
figure { margin: 0; background: #fff; border: 1px solid #e3e7ef; border-radius: 8px; padding: .5rem; }
figure img { width: 100%; height: auto; } figcaption { color: #5a6478; font-size: .9rem; padding: .3rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .92rem; }
th, td { border-bottom: 1px solid #e3e7ef; padding: .3rem .8rem; text-align: left; }
th { background: #f3f5f9; }
"""

SCRIPT = """
(function () {
  var errors = 0;
  window.addEventListener('error', function () { errors += 1; document.body.dataset.jsErrors = errors; });
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.querySelectorAll('img[data-plot]'));
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.dataset.plots = imgs.length;
    document.body.dataset.plotsRendered = ok;
    document.body.dataset.jsErrors = errors;
  });
})();
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(name: str, caption: str, draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if not draw(ax):
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", color="#888", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.spines[["top", "right"]].set_visible(False)
    return (f'<figure><img data-plot="{name}" alt="{html.escape(caption)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(df: pd.DataFrame, formats: dict | None = None) -> str:
    if df is None or not len(df):
        return "<p class='sub'>none</p>"
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            if isinstance(v, (list, tuple)):
                text = ", ".join(map(str, v)) or "(none)"
            elif v is None or (not isinstance(v, (str, dict)) and pd.isna(v)):
                text = ""
            else:
                text = formats[c].format(v) if c in formats else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _hist_by_language(df: pd.DataFrame, width: float, xlabel: str):
    def draw(ax):
        if df is None or not len(df):
            return False
        for lang, part in df.groupby("language"):  # overlaid bars, one colour per language
            ax.bar(part["bin"], part["files"], width=width, align="edge", alpha=0.55, label=str(lang))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("files")
        ax.legend(fontsize=7, ncol=4, frameon=False)
        return True

    return draw


def _top_reasons(df: pd.DataFrame | None, label: str, count: str):
    """A figure's draw function: the 15 most common reasons of `df` as horizontal bars."""
    def draw(ax):
        top = df.head(15) if df is not None else []
        if not len(top):
            return False
        ax.barh(top[label].astype(str)[::-1], top[count][::-1], color="#e45756")
        ax.set_xlabel(count)
        return True

    return draw


def _player(clip: dict) -> str:
    label = f"DNSMOS {clip['dnsmos_ovrl']:.2f} · {clip['duration_s']:.1f} s"
    if clip.get("data"):
        src = f"data:{clip['mime']};base64,{base64.b64encode(clip['data']).decode('ascii')}"
        audio = f'<audio controls preload="none" src="{src}"></audio>'
    else:
        audio = f"<span class='sub'>{html.escape(clip['uri'])} (not embedded)</span>"
    text = html.escape((clip.get("transcript") or "")[:160])
    return f"<td>{audio}<br><span class='sub'>{label}</span><br>{text}</td>"


def _listen(examples: list[dict]) -> str:
    if not examples:
        return "<p class='sub'>none</p>"
    rows = "".join(f"<tr><td>{html.escape(str(e['language']))}</td>{_player(e['best'])}{_player(e['worst'])}</tr>"
                   for e in examples)
    return f"<table><thead><tr><th>language</th><th>best</th><th>worst</th></tr></thead><tbody>{rows}</tbody></table>"


def _blocked(blocked: dict | None) -> str:
    """The notice a blocked publish leaves at the top of the page: what failed and how to go on."""
    if not blocked:
        return ""
    run_id = html.escape(blocked["run_id"])
    return (f"<p class='blocked'><b>Publishing is blocked</b> by run {run_id}: {html.escape(blocked['message'] or '')}. "
            f"Its files are pending; fix the cause, or review them and run "
            f"<code>voxlake publish --accept {run_id}</code>.</p>")


def render(data: ReportData) -> str:
    t = data.totals
    figures = []

    def by_lang(ax):
        df = data.by_language_band
        if not len(df):
            return False
        pivot = df.pivot_table(index="language", columns="band", values="hours", aggfunc="sum", fill_value=0)
        bottom = None
        for band in pivot.columns:
            ax.bar(pivot.index.astype(str), pivot[band], bottom=bottom, label=str(band))
            bottom = pivot[band] if bottom is None else bottom + pivot[band]
        ax.set_ylabel("hours")
        ax.legend(title="quality band", fontsize=7, frameon=False)
        return True

    figures.append(_figure("hours_by_language", "Hours of curated audio by language and quality band", by_lang))

    def files_by_lang(ax):
        df = data.by_language_band
        if not len(df):
            return False
        per = df.groupby("language")["files"].sum()
        ax.bar(per.index.astype(str), per.values, color="#4c78a8")
        ax.set_ylabel("files")
        return True

    figures.append(_figure("files_by_language", "Curated files by language", files_by_lang))
    for column, (width, label) in HISTOGRAMS.items():
        figures.append(_figure(f"hist_{column}", f"Distribution of {label}, by language",
                               _hist_by_language(data.histograms.get(column), width, label)))

    def bandwidth(ax):
        df = data.bandwidth
        if not len(df):
            return False
        ax.barh(df["class"].astype(str), df["files"], color="#72b7b2")
        ax.set_xlabel("files")
        return True

    figures.append(_figure("bandwidth", "Bandwidth classes (effective audio bandwidth)", bandwidth))

    figures.append(_figure("quarantine_reasons", "Why files are in quarantine (code, or first failed expectation)",
                           _top_reasons(data.quarantine, "reason", "files")))

    def trend(ax):
        df = data.quarantine_trend
        if not len(df):
            return False
        pivot = df.pivot_table(index="started_at", columns="code", values="files", aggfunc="sum", fill_value=0)
        for code in list(pivot.sum().sort_values(ascending=False).index[:8]):
            ax.plot(range(len(pivot)), pivot[code], marker="o", label=str(code))
        ax.set_xlabel("run (oldest first)")
        ax.set_ylabel("failures")
        ax.legend(fontsize=6, frameon=False)
        return True

    figures.append(_figure("quarantine_trend", "Failure codes per run (ops.runs)", trend))

    def failures(ax):
        df = data.annotator_failures
        if not len(df):
            return False
        ax.bar(df["annotator"], df["failure_rate"] * 100, color="#f58518")
        ax.set_ylabel("% of files failed")
        return True

    figures.append(_figure("annotator_failures", "Annotator failure rates (silver)", failures))

    def throughput(ax):
        df = data.throughput
        if not len(df):
            return False
        ax.bar(range(len(df)), df["x_realtime"], color="#54a24b")
        ax.set_xticks(range(len(df)))
        ax.set_xticklabels(df["job"], rotation=45, fontsize=7)
        ax.set_ylabel("audio hours per wall hour")
        return True

    figures.append(_figure("throughput", "Throughput per run (ops.runs)", throughput))

    def clip_lengths(ax):
        df = data.clip_lengths
        if df is None or not len(df):
            return False
        ax.bar(df["bin"] + 0.5, df["clips"], width=1.0, color="#72b7b2")
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel("curated clips")
        return True

    figures.append(_figure("clip_lengths", "Curated clip lengths (gold.clips)", clip_lengths))

    figures.append(_figure("clip_rejections", "Why candidate clips are in quarantine (failed expectations)",
                           _top_reasons(data.clip_rejections, "expectation", "clips")))

    recipe = pd.DataFrame(sorted(data.recipe.items()), columns=["setting", "value"])
    cards = "".join(f"<div class='card'>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in [
        ("curated files", f"{t['files']:,}"), ("curated hours", f"{t['hours']:.2f}" if t["hours"] >= 1 else f"{t['hours']:.3f}"),
        ("languages", str(t["languages"])), ("quarantined files", f"{t['quarantined']:,}"),
        ("pending files", f"{t['pending']:,}")])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>voxlake dataset report</title>
<style>{STYLE}</style></head>
<body data-plots="0" data-plots-rendered="0" data-js-errors="0">
<h1>voxlake dataset report</h1>
<p class="sub">{html.escape(data.warehouse)} · gold.utterances version {data.gold_version} · {html.escape(data.created_at)}</p>
<div class="cards">{cards}</div>{_blocked(data.blocked)}
<div class="grid">{''.join(figures)}</div>
<h2>Listen: the best and the worst curated file of each language (by DNSMOS)</h2>{_listen(data.examples)}
<h2>Training clips: curated hours from long and from short files</h2>{_table(data.clip_sources, {"hours": "{:.3f}"})}
<h2>Quarantine reasons</h2>{_table(data.quarantine)}
<h2>Clip rejection reasons</h2>{_table(data.clip_rejections)}
<h2>Annotator failures</h2>{_table(data.annotator_failures, {"failure_rate": "{:.1%}"})}
<h2>Runs</h2>{_table(data.throughput, {"audio_hours": "{:.3f}", "wall_hours": "{:.3f}", "x_realtime": "{:.2f}"})}
<h2>Recipe in force</h2><p class="sub">recipe hash of gold: {html.escape(str(data.recipe_hash))}</p>{_table(recipe)}
<script>{SCRIPT}</script>
</body></html>
"""
