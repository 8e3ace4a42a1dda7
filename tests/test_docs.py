"""The user's guide and the documentation site: README stays a short guide, every command marked
runnable in README and docs/ runs as written, and the built site renders in a real browser."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARK = "<!-- runnable -->"


def runnable_blocks(path: Path) -> list[list[str]]:
    """The lines of every fenced block that follows a ``<!-- runnable -->`` line."""
    text = path.read_text()
    blocks = []
    for match in re.finditer(re.escape(MARK) + r"\s*\n```\w*\n(.*?)\n```", text, re.S):
        lines = [ln.split(" #")[0].strip() for ln in match[1].splitlines()]
        blocks.append([ln for ln in lines if ln and not ln.startswith("#")])
    return blocks


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_is_a_short_guide_that_points_nowhere_outside_the_repository():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "dates belong in docs/performance.md"
    assert not re.search(r"\b[0-9a-f]{7,40}\b", text), "commit hashes belong in CHANGELOG.md"
    for doc in documents():
        body = doc.read_text()
        assert "shared/" not in body.replace("/shared/latentflow-data", ""), doc.name
        assert "REFERENCE.md" not in body and "ECOSYSTEM.md" not in body, doc.name
    assert runnable_blocks(REPO / "README.md"), "README's quick start is marked runnable"


@pytest.mark.slow
@pytest.mark.parametrize(
    "doc", [d for d in documents() if runnable_blocks(d)], ids=lambda d: d.name
)
def test_every_runnable_command_in_the_docs_runs_as_written(doc, real_data_root, tmp_path):
    env = {**os.environ, "LATENTFLOW_DATA": str(real_data_root), "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for block in runnable_blocks(doc):
        for line in block:
            argv = shlex.split(line)
            assert argv[0].startswith("latentflow-"), f"{doc.name}: only CLI lines run: {line}"
            done = subprocess.run(
                [str(BIN / argv[0]), *argv[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{doc.name}: {line}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "tiny" / "metrics.json").is_file()


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def dump_dom(browser: str, page: Path) -> str:
    done = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it (strict), without executing the notebooks (their own
    test runs them)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "LATENTFLOW_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return out


@pytest.mark.slow
def test_the_site_builds_strict_with_every_page_and_a_search_index(site):
    for page in ("index", "getting-started", "model", "results", "extending", "api", "security"):
        path = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert path.is_file(), page
    index = json.loads((site / "search" / "search_index.json").read_text())
    text = " ".join(doc["text"] for doc in index["docs"])
    assert "NLSq" in text and "trust_components" in text and "AFTimePrior" in text


@pytest.mark.slow
def test_the_site_renders_in_a_real_browser(site):
    browser = chromium()
    if browser is None:
        if os.environ.get("LATENTFLOW_REQUIRE_BROWSER"):
            pytest.fail("no chromium, and LATENTFLOW_REQUIRE_BROWSER is set (CI installs it)")
        pytest.skip("no chromium (apt-get install chromium)")
    home = dump_dom(browser, site / "index.html")
    assert re.search(r"<h1[^>]*>latentflow", home) and "Getting started" in home
    results = dump_dom(browser, site / "results" / "index.html")
    assert re.search(r"<h2[^>]*id=\"jsb-chorales", results), "the recipe page's sections"
    api = dump_dom(browser, site / "api" / "index.html")
    assert "latentflow.flows.transforms" in api and "NLSq" in api and "AFTimePrior" in api
