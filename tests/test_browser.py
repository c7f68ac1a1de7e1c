"""The leaderboard page used as a person would, in Debian's headless Chromium driven by Playwright.

Builds index.html from a small synthetic MLflow store, then: sorts by clicking headers, filters by text and by
family, opens a model card (licence and citation from models.yaml, digest copy, MLflow run links), switches to a
task tab, and checks at 1,400 px that the score column is in view without scrolling. Also: a model named
`<script>` stays text, the page makes no network request, and page size / load time are printed.

Skipped when /usr/bin/chromium or the Playwright package is absent (`./install.sh --test` installs both).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import pandas as pd

from mlflow_fixtures import FakeStore

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIL = "<script>document.title='pwned'</script>"
REAL_KEY = "mace-mp-0-inv"  # a models.yaml key: its card shows the registry's licence and citation
MLFLOW_UI = "http://127.0.0.1:5999"
# key, name, family, qm9 (id) CKNNA, crystals (ood) CKNNA
MODELS = [("ref", "Reference", "mlip", 1.0, 1.0), (REAL_KEY, "MACE-MP-0", "mlip", 0.62, 0.48),
          ("alpha", "Alpha", "text", 0.35, 0.52), ("beta", "Beta", "smiles", 0.55, 0.30),
          ("evil", EVIL, "text", 0.20, 0.25)]

@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is not installed (Debian: apt-get install -y chromium; ./install.sh --test)")
    pytest.importorskip("playwright", reason="Playwright is not installed (./install.sh --test installs it)")
    from benchmark.leaderboard.build import write_leaderboard

    tmp = tmp_path_factory.mktemp("browser")
    store = FakeStore(tmp)
    p = store.parent({"qm9": "ref", "crystals": "ref"})
    for i, (key, name, family, qm9, cryst) in enumerate(MODELS):
        for task, role, c in (("qm9", "id", qm9), ("crystals", "ood", cryst)):
            store.child(p, key, task, role=role, name=name, family=family, embed=True, seed=10 * i + len(task),
                        checkpoint_digest=f"{i:02d}" + "ab" * 31,
                        metrics={"cknna_to_ref": c, "cknna_to_ref_ci_low": c - 0.03, "cknna_to_ref_ci_high": c + 0.03,
                                 "intrinsic_dimension": 5 + i, "energy_mae": 0.01 * (i + 1),
                                 "info_imbalance_ref_to_model": 0.1 * i, "info_imbalance_model_to_ref": 0.5 - 0.1 * i})
    store.child(p, "gamma", "qm9", status="skipped", reason="package `fairchem` is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MATTERALIGN_MLFLOW_URL", MLFLOW_UI)
        out = write_leaderboard(tmp / "leaderboard", tracking_uri=store.uri, experiment=store.experiment,
                                log_to_mlflow=False)
    return out["index.html"]


@pytest.fixture(scope="module")
def browser(page_file, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 900})
        yield context
        context.close()


@pytest.fixture()
def page(browser, page_file):
    tab = browser.new_page()
    tab.requests = []  # type: ignore[attr-defined]
    tab.dialogs = []  # type: ignore[attr-defined]
    tab.on("request", lambda r: tab.requests.append(r.url))  # type: ignore[attr-defined]
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(page_file.resolve().as_uri())
    yield tab
    assert not errors, errors
    tab.close()


def _models(page, table: str = "#panel-overall table") -> list[str]:
    """The model keys of the visible rows, top to bottom."""
    return page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.filter(r => !r.hidden)"
                                     ".map(r => r.dataset.model)")


@pytest.mark.slow
def test_sorting_by_clicking_headers(page):
    ranked = _models(page)
    assert ranked == [REAL_KEY, "alpha", "beta", "evil", "ref"]  # mean CKNNA 0.55, 0.435, 0.425, 0.225, none
    score = page.locator("#panel-overall th[data-col='cknna_to_ref']")
    score.click()  # first click: better first (higher is better)
    assert score.get_attribute("aria-sort") == "descending"
    assert _models(page) == ranked
    score.click()
    assert score.get_attribute("aria-sort") == "ascending"
    # ascending, and the reference (no score of its own) stays last
    assert _models(page) == ["evil", "beta", "alpha", REAL_KEY, "ref"]
    page.locator("#panel-overall th[data-col='model']").focus()
    page.keyboard.press("Enter")  # sorting works from the keyboard too
    assert _models(page) == ["evil", "alpha", "beta", REAL_KEY, "ref"]  # by display name; "<script>" first


@pytest.mark.slow
def test_text_and_family_filters_hide_rows(page):
    page.fill("#filter-text", "alph")
    assert _models(page) == ["alpha"]
    assert page.locator("#row-count").inner_text() == "1 of 5 rows shown"
    page.fill("#filter-text", "")
    page.select_option("select[data-filter='family']", "text")
    assert sorted(_models(page)) == ["alpha", "evil"]
    page.select_option("select[data-filter='family']", "")
    assert len(_models(page)) == len(MODELS)


@pytest.mark.slow
def test_model_card_shows_registry_facts_digest_and_run_links(page):
    page.locator(f"#panel-overall tr[data-model='{REAL_KEY}'] button.model").click()
    card = page.locator("dialog[open]")
    assert card.count() == 1 and card.locator("h3").inner_text() == "MACE-MP-0"
    text = card.inner_text()
    assert "MIT" in text and "Batatia et al." in text and "MPtrj" in text
    assert card.locator("a[href='https://arxiv.org/abs/2401.00096']").count() == 1
    digest = card.locator(".digest").first
    assert digest.inner_text() == "01abababab" + "ab" + "…"
    assert card.locator("button.copy").first.get_attribute("data-copy") == "01" + "ab" * 31
    links = card.locator(f"a[href^='{MLFLOW_UI}/#/runs/']")
    assert links.count() == 2  # one run per task
    card.locator("dl").click()  # a click inside the card keeps it open
    assert page.locator("dialog[open]").count() == 1
    card.locator("button.close").click()
    assert page.locator("dialog[open]").count() == 0
    page.locator("#panel-overall tr[data-model='alpha'] button.model").click()
    page.mouse.click(5, 5)  # the backdrop closes it
    assert page.locator("dialog[open]").count() == 0


@pytest.mark.slow
def test_task_tab_shows_that_tasks_rows(page):
    page.locator(".tabs button[data-tab='task-qm9']").click()
    assert page.locator("#panel-overall").is_hidden() and page.locator("#panel-task-qm9").is_visible()
    assert sorted(_models(page, "#panel-task-qm9 table")) == sorted(k for k, *_ in MODELS)
    assert page.locator("#panel-task-qm9 tbody tr").first.locator("td").nth(1).inner_text() in ("id", "ood")
    page.locator("#panel-task-qm9 th[data-col='cknna_to_ref']").click()
    assert _models(page, "#panel-task-qm9 table")[:2] == ["ref", REAL_KEY]
    assert page.url.endswith("#task-qm9")
    page.locator(".tabs button[data-tab='not-ranked']").click()
    assert "fairchem" in page.locator("#panel-not-ranked").inner_text()


@pytest.mark.slow
def test_score_in_view_at_1400px_and_screenshot(page, tmp_path):
    box = page.locator("#panel-overall th[data-col='cknna_to_ref']").bounding_box()
    cell = page.locator(f"#panel-overall tr[data-model='{REAL_KEY}'] td.primary").bounding_box()
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    assert width == 1400
    for b in (box, cell):
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= width and b["y"] + b["height"] <= height, b
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width  # no horizontal scrolling
    shot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("MATTERALIGN_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["MATTERALIGN_SCREENSHOT_DIR"]) / "leaderboard-test.png")


@pytest.mark.slow
def test_strings_stay_text_and_page_is_offline(page, page_file):
    html = page_file.read_text(encoding="utf-8")
    assert EVIL not in html and html.lower().count("<script") == 1  # only the page's own script
    assert page.title().startswith("matteralign leaderboard") and "pwned" not in page.title()
    assert not page.dialogs  # type: ignore[attr-defined]
    assert page.locator("#panel-overall tr[data-model='evil'] button.model").inner_text() == EVIL
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests  # type: ignore[attr-defined]
    assert page.locator("figure img").count() >= 8
    assert page.locator("figure img").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("a[download='leaderboard.csv']").count() == 1
    assert page.locator("code").count() >= 1  # backticks in the notes render as code


@pytest.mark.slow
def test_page_size_and_load_time(browser, page_file):
    tab = browser.new_page()
    start = time.perf_counter()
    tab.goto(page_file.resolve().as_uri(), wait_until="load")
    wall = time.perf_counter() - start
    timing = tab.evaluate("(() => { const t = performance.getEntriesByType('navigation')[0];"
                          " return {dcl: t.domContentLoadedEventEnd, load: t.loadEventEnd}; })()")
    tab.close()
    size = page_file.stat().st_size
    print(f"\npage {size / 1024:.0f} KiB; DOMContentLoaded {timing['dcl']:.0f} ms, load {timing['load']:.0f} ms, "
          f"goto wall {wall * 1000:.0f} ms")
    assert timing["load"] < 5000, timing


def _tables(extra: dict[str, list] | None = None, name: str = "Alpha"):
    """A two-model board built directly (no MLflow, no browser) for the fast rendering checks."""
    from benchmark.leaderboard.collect import Board
    from benchmark.leaderboard.table import Tables

    models = pd.DataFrame({
        "rank": [1, 2], "model": ["alpha", "ref"], "name": [name, "Reference"], "family": ["text", "mlip"],
        "modality": ["text", "atoms"], "domain": ["text", "materials"], "parameters": [1000.0, float("nan")],
        "training_data": ["web", "MPtrj"], "reference_on": ["", "qm9"], "cknna_to_ref": [0.5, float("nan")],
        "id_score": [0.5, float("nan")], "ood_score": [float("nan")] * 2, "ood_collapse": ["n/a", "n/a"],
        "energy_mae": [float("nan"), 0.01], "probe_energy_mae": [float("nan")] * 2,
        "cknna_to_ref[qm9]": [0.5, float("nan")], **(extra or {})})
    per_task = pd.DataFrame({
        "model": ["alpha", "ref"], "task": ["qm9", "qm9"], "role": ["id", "id"], "is_reference": ["false", "true"],
        "checkpoint_digest": ["f" * 64, "e" * 64], "run_id": ["r1", "r2"], "cknna_to_ref": [0.5, 1.0]})
    not_ranked = pd.DataFrame(columns=["model", "task", "status", "reason", "run_id"])
    board = Board("0.1.0", per_task, not_ranked, {"qm9": "1"}, {"qm9": "ref"}, {"qm9": "configured"})
    return Tables(models, per_task, not_ranked, {}, {}, {}), board


def _render(tables, board, **kw) -> str:
    from benchmark.leaderboard.html import render

    return render(tables, board, {}, "test", ["ranked by `cknna_to_ref`"], model_info={}, **kw)


def test_columns_follow_the_data_and_rank_intervals_are_optional():
    plain = _render(*_tables())
    assert 'data-col="cknna_to_ref"' in plain and 'data-col="probe_energy_mae"' not in plain  # all-empty: left out
    assert 'data-col="dcor_to_ref"' not in plain and "<small>[" not in plain and 'class="tied"' not in plain
    assert "<code>cknna_to_ref</code>" in plain  # Markdown backticks in the notes
    rich = _render(*_tables({"dcor_to_ref": [0.7, float("nan")], "rank_low": [1, 1], "rank_high": [2, 2],
                             "tied": [True, True]}))
    head = rich.split('data-col="dcor_to_ref"', 1)[1].split(">", 1)[0]
    assert "distance correlation" in head and 'data-better="higher"' in head  # tooltip from METRICS
    assert "<small>[1–2]</small>" in rich and 'class="tied"' in rich
    assert "dCor to reference" in rich.split('<dl class="defs">', 1)[1]  # and in the definitions


def test_hostile_strings_and_urls():
    from benchmark.errors import MatteralignError
    from benchmark.leaderboard.html import citation_html, resolve_mlflow_url

    evil = "</script><script>alert(1)</script>"
    html = _render(*_tables(name=evil), mlflow_url="http://mlflow.example:5000/")
    assert evil not in html and html.lower().count("<script") == 1
    assert 'href="http://mlflow.example:5000/#/runs/r1"' in html
    with pytest.raises(MatteralignError, match="MATTERALIGN_MLFLOW_URL"):
        resolve_mlflow_url("javascript:alert(1)")
    assert 'href="https://doi.org/10.1038/s42256-023-00716-3"' in citation_html("Deng, doi:10.1038/s42256-023-00716-3")
    assert citation_html("<b>no link</b>") == "&lt;b&gt;no link&lt;/b&gt;"


def test_downloads_embed_the_files_as_data_urls(tmp_path):
    import base64
    import re

    csv = tmp_path / "leaderboard.csv"
    csv.write_text("rank,model\n1,alpha\n")
    linked = _render(*_tables())
    assert 'href="leaderboard.csv" download="leaderboard.csv"' in linked  # the sibling file, offline too
    embedded = _render(*_tables(), downloads={"leaderboard.csv": csv})
    href = re.search(r'href="data:text/csv;base64,([^"]+)" download="leaderboard.csv"', embedded)
    assert href and base64.b64decode(href.group(1)) == csv.read_bytes()
