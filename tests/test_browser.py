"""Render leaderboard/index.html in Debian's headless Chromium: the page draws, the table and figures exist.

Skipped when /usr/bin/chromium is absent (install it with `apt-get install -y chromium`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlflow_fixtures import FakeStore

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000"]
MODELS = ["ref", "alpha", "beta", "<script>document.title='pwned'</script>"]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is not installed (Debian: apt-get install -y chromium)")
    from benchmark.leaderboard.build import write_leaderboard

    tmp = tmp_path_factory.mktemp("browser")
    store = FakeStore(tmp)
    p = store.parent({"qm9": "ref", "crystals": "ref"})
    for i, name in enumerate(MODELS):
        key = "evil" if name.startswith("<") else name
        for task, role, c in (("qm9", "id", 0.3 + 0.1 * i), ("crystals", "ood", 0.6 - 0.1 * i)):
            store.child(p, key, task, role=role, name=name, family="mlip" if i % 2 else "text", embed=True,
                        seed=i, metrics={"cknna_to_ref": 1.0 if key == "ref" else c, "intrinsic_dimension": 5 + i,
                                         "energy_mae": 0.01 * (i + 1), "info_imbalance_ref_to_model": 0.1 * i,
                                         "info_imbalance_model_to_ref": 0.5 - 0.1 * i})
    out = write_leaderboard(tmp / "leaderboard", tracking_uri=store.uri, experiment=store.experiment,
                            log_to_mlflow=False)
    return out["index.html"]


def test_page_renders_with_table_and_figures(page, tmp_path):
    shot = tmp_path / "page.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", page.resolve().as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2000, 1280)
    assert (pixels < 200).mean() > 0.03, "the screenshot is (almost) blank"

    dom = _chromium(tmp_path, "--dump-dom", page.resolve().as_uri()).stdout
    board = re.search(r'<table class="leaderboard">.*?</table>', dom, re.S)
    assert board is not None, dom[:2000]
    assert len(re.findall(r"<tr>", board.group(0))) == 1 + len(MODELS)  # header + one row per model
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', dom)) >= 8
    assert "<title>matteralign leaderboard" in dom and "pwned" not in dom.split("</title>")[0]
    assert "&lt;script&gt;document.title" in dom and "<script" not in dom
