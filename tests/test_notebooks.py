"""Every notebook under notebooks/ runs top to bottom (nbclient), so none of them rots.

The kernel is this interpreter, through a kernelspec the test writes into a temporary
JUPYTER_PATH (no installed kernel needed, whatever ``python3`` means on the machine). Notebooks
execute in memory and are never written back; the committed files must carry no outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "latentflow-test"
# Notebooks 04 and 05 train a tiny run through latentflow-train: they need the data; 05 renders
# audio with FluidSynth.
NEEDS_DATA = {"04_training_curves.ipynb", "05_listen.ipynb"}
NEEDS_AUDIO = {"05_listen.ipynb"}


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_committed_without_outputs():
    paths = notebook_paths()
    assert [p.name[:3] for p in paths] == ["01_", "02_", "03_", "04_", "05_"]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_env: Path, monkeypatch, request):
    if path.name in NEEDS_AUDIO:
        from latentflow.audio import default_soundfont

        if not (__import__("shutil").which("fluidsynth") and default_soundfont()):
            pytest.skip(
                "no FluidSynth and soundfont (apt-get install fluidsynth fluid-soundfont-gm)"
            )
    if path.name in NEEDS_DATA:
        data_root = request.getfixturevalue("real_data_root")
        monkeypatch.setenv("LATENTFLOW_DATA", str(data_root))
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("LATENTFLOW_CKPT", "LATENTFLOW_RUN"):  # the notebooks' own small defaults
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    # Every figure-making cell displayed an image.
    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code" and "plotting.plot_" in cell.source
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plotting.plot_" in c.source]
    assert len(images) >= len(plot_cells)
    # Every listening cell displayed players (IPython's Audio: an <audio> element).
    players = [
        out
        for cell in nb.cells
        if cell.cell_type == "code" and "Audio(" in cell.source
        for out in cell.outputs
        if "<audio" in out.get("data", {}).get("text/html", "")
    ]
    audio_cells = [c for c in nb.cells if c.cell_type == "code" and "Audio(" in c.source]
    assert len(players) >= len(audio_cells) and (plot_cells or players)
