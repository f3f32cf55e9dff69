"""`voxlake report` over the shared corpus run, opened in a real browser (headless Chromium)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from jobs.warehouse.catalog import UTTERANCES

pytestmark = pytest.mark.slow  # the shared corpus run and headless Chromium

def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("headless Chromium is needed for the report test: `apt-get install chromium` (.ci/run does)")
    return exe


def test_report_renders_every_plot_offline_without_script_errors(spark, corpus_warehouse, tmp_path):
    from jobs.commandline.runner import write_report

    out = tmp_path / "report.html"
    url = write_report(spark, corpus_warehouse["config"], corpus_warehouse["warehouse"], str(out))
    page = out.read_text(encoding="utf-8")
    assert url == out.resolve().as_uri()
    # self-contained: no script, style, image or font is fetched from anywhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the report must not load anything remote"
    assert "@import" not in page and "url(http" not in page

    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:2000]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["plots"]) >= 11 and attrs["plots-rendered"] == attrs["plots"], attrs
    assert attrs["js-errors"] == "0", attrs
    shot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1200,2400", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    assert shot.stat().st_size > 50_000, "the screenshot is (nearly) blank"

    # the numbers on the page are the warehouse's
    wh = corpus_warehouse["warehouse"]
    curated = spark.read.format("delta").load(wh.path(UTTERANCES)).count()
    assert f"<div class='card'>curated files<b>{curated:,}</b></div>" in page
    for reason in ("TRUNCATED", "UNKNOWN_FORMAT"):  # two of the bad inputs' codes
        assert f"<td>{reason}</td>" in page, reason

    # players for the best and worst file per language: the clips themselves, embedded
    import base64

    clips = re.findall(r'<audio controls preload="none" src="data:audio/[a-z0-9]+;base64,([^"]+)"', page)
    languages = {r["language"] for r in spark.read.format("delta").load(wh.path(UTTERANCES))
                 .where("dnsmos_ovrl IS NOT NULL").select("language").distinct().collect()}
    assert languages and len(clips) >= 2, "no embedded audio players"
    assert all(len(base64.b64decode(c)) > 1000 for c in clips)
