"""latentflow.plotting and the latentflow-plot command: the numbers behind each figure, and
each figure written from tiny models, checkpoints, benchmark CSVs and run directories."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from latentflow import plotting
from latentflow.data.vocab import CharVocab
from latentflow.flows import Affine, NLSq
from latentflow.lightning.module import SequenceLitModule
from latentflow.models.build import build_net
from latentflow.plot_cli import find_checkpoint, main
from latentflow.toy import fit_mixture_flow, mixture_log_prob

from .helpers import recipe_components

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXT = "the groups grew"
SYMBOLS = ["<pad>", "<unk>", "_", *sorted(set(TEXT) - {" "})]
TINY_DATA = dict(kind="text", num_features=len(SYMBOLS), max_length=24)
PRIORS = {"af": "af_af", "iaf": "iaf_scf", "none": "af_only"}


def tiny_components(time_flow: str = "af", latent_dim: int = 2) -> dict:
    return recipe_components(PRIORS[time_flow], "model.pos_dim=4", latent_dim=latent_dim,
                             pos_dim=4, conditioner_hidden=8, conditioner_layers=1)  # fmt: skip


def tiny_net(time_flow: str = "af", latent_dim: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return build_net(tiny_components(time_flow, latent_dim), TINY_DATA)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------- Fig. 5
def test_nlsq_composition_is_a_multimodal_density_and_c_zero_is_gaussian():
    out = plotting.nlsq_composition(lim=7.0, num=6001)
    dz = (out["z"][1] - out["z"][0]).item()
    density = out["log_pz"].exp()
    assert math.isclose(density.sum().item() * dz, 1.0, abs_tol=1e-4)
    assert plotting.count_modes(density) >= 3
    # c' = 0 removes the bump: NLSq reduces to an affine map, a Gaussian stays one Gaussian.
    affine = plotting.nlsq_composition([(0.5, 0.3, 0.0, 1.0, -1.0)] * 2, lim=7.0)
    assert plotting.count_modes(affine["log_pz"].exp()) == 1
    with pytest.raises(ValueError, match="raw NLSq parameters"):
        plotting.nlsq_composition([(0.0, 0.0, 1.0)])


def test_plot_nlsq_composition_writes_two_panels(tmp_path):
    fig = plotting.plot_nlsq_composition(path=tmp_path / "a" / "fig5ab.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert is_png(tmp_path / "a" / "fig5ab.png")
    assert "modes" in fig.axes[1].get_title()


def test_plot_toy_densities_titles_carry_nll_and_entropy(tmp_path):
    fits = [fit_mixture_flow(t, steps=3, test_size=500) for t in (Affine, NLSq)]
    fig = plotting.plot_toy_densities(fits, grid_size=40, path=tmp_path / "fig5c.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3
    assert f"{fits[0].nll:.3f}" in titles[1] and "affine" in titles[1]
    assert f"{fits[1].nll:.3f}" in titles[2] and "NLSq" in titles[2]
    assert f"{fits[0].entropy:.3f}" in fig.get_suptitle()
    assert is_png(tmp_path / "fig5c.png")


def test_mixture_density_integrates_to_one():
    points, extent = plotting.density_grid(4.0, 401)
    step = (extent[1] - extent[0]) / 400
    mass = mixture_log_prob(points).exp().sum().item() * step**2
    assert math.isclose(mass, 1.0, abs_tol=1e-3)


# ---------------------------------------------------------------------------- Fig. 6
@pytest.mark.parametrize("time_flow", ["af", "iaf", "none"])
def test_conditional_densities_sum_to_the_prior_log_prob(time_flow, float64):
    """sum_t log p(z_t | z_<t) evaluated at z_t is log p(z): the contexts are the right ones."""
    prior = tiny_net(time_flow).prior.eval().double()
    with torch.no_grad():  # large random weights: every input visibly moves every output
        for p in prior.parameters():
            p.normal_(0.0, 0.5)
    T = 7
    z, lengths = torch.randn(1, T, 2), torch.tensor([T])
    with torch.no_grad():
        per_step = torch.stack(
            [
                plotting.conditional_log_density(prior, z, lengths, [t], z[0, t : t + 1])[0, 0]
                for t in range(T)
            ]
        )
        total = prior.log_prob(z, lengths)[0]
    torch.testing.assert_close(per_step.sum(), total, rtol=1e-9, atol=1e-9)


def test_conditional_density_integrates_to_one():
    prior = tiny_net("af").prior.eval()
    z, lengths = torch.randn(1, 5, 2), torch.tensor([5])
    points, extent = plotting.density_grid(10.0, 301)
    step = (extent[1] - extent[0]) / 300
    with torch.no_grad():
        log_p = plotting.conditional_log_density(prior, z, lengths, [0, 3], points)
    mass = log_p.exp().sum(-1) * step**2  # [2]
    torch.testing.assert_close(mass, torch.ones(2), atol=2e-2, rtol=0)


def test_prior_densities_panels_follow_the_focus_and_mark_the_true_encoding():
    net, vocab = tiny_net("af"), CharVocab(SYMBOLS)
    d = plotting.prior_densities(net, TEXT, focus="_groups_", vocab=vocab, grid_size=20)
    tokens = plotting.tokenize(TEXT)
    assert d.steps == list(range(3, 11)) and [tokens[t] for t in d.steps] == list("_groups_")
    assert d.density.shape == (8, 20, 20) and bool((d.density >= 0).all())
    assert d.encodings.shape == (8, len(SYMBOLS) - 2, 2)
    # The encoding marked for the true symbol is the mean of q(z_t | x) for the text itself.
    x = torch.tensor([vocab.encode(tokens)])
    with torch.no_grad():
        mu, _ = net.eval().encode(x, torch.tensor([len(tokens)]))
    for i, t in enumerate(d.steps):
        j = d.symbols.index(tokens[t])
        torch.testing.assert_close(d.encodings[i, j], mu[0, t])
    # The default grid covers every mark.
    x0, x1, y0, y1 = d.extent
    enc = d.encodings.reshape(-1, 2)
    assert bool((enc[:, 0] >= x0).all() and (enc[:, 0] <= x1).all())
    assert bool((enc[:, 1] >= y0).all() and (enc[:, 1] <= y1).all())


def test_plot_prior_densities_from_a_lightning_module(tmp_path):
    module = SequenceLitModule(tiny_components(), TINY_DATA, vocab=SYMBOLS)
    fig = plotting.plot_prior_densities(
        module, TEXT, focus="grew", grid_size=16, ncols=3, path=tmp_path / "fig6.png"
    )
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 4 and len(fig.axes) == 6  # 2 rows x 3, two switched off
    assert visible[0].get_title().endswith("[g]")
    assert is_png(tmp_path / "fig6.png")
    assert module.training  # the model's mode is restored


def test_prior_densities_reject_bad_inputs():
    vocab = CharVocab(SYMBOLS)
    with pytest.raises(ValueError, match="latent_dim must be 2"):
        plotting.prior_densities(tiny_net(latent_dim=3), TEXT, vocab=vocab)
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        plotting.prior_densities(tiny_net(), "The groups", focus=None, vocab=vocab)
    with pytest.raises(ValueError, match="does not occur"):
        plotting.prior_densities(tiny_net(), TEXT, focus="gone", vocab=vocab)
    with pytest.raises(ValueError, match="vocab"):
        plotting.prior_densities(tiny_net(), TEXT)


# ---------------------------------------------------------------------------- Fig. 7
def write_bench_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


SPEED_HEADER = ["task", "model", "batch_size", "length", "median_s"]


def bench_rows() -> list[list]:
    rows = []
    for task in ("text", "music"):
        for model, rate in (("lstm", 0.01), ("iaf_scf", 0.002)):
            for length in (10, 50, 100):
                for batch in (1, 64):
                    rows.append([task, model, batch, length, rate * length * (1 + batch / 64)])
    return rows


def test_read_benchmark_csv_reads_numbers_and_skips_failed_rows(tmp_path):
    rows = [r + ["cpu"] for r in bench_rows()] + [["text", "af_af", 1, 10, "nan", "cpu"]]
    path = write_bench_csv(tmp_path / "b.csv", [*SPEED_HEADER, "device"], rows)
    got = plotting.read_benchmark_csv(path)
    assert len(got) == len(rows) - 1
    assert got[0]["device"] == "cpu" and isinstance(got[0]["length"], int)
    assert isinstance(got[0]["batch_size"], int) and isinstance(got[0]["median_s"], float)
    banded = [r + [r[4] * 0.9, r[4] * 1.1] for r in bench_rows()]
    path = write_bench_csv(tmp_path / "s.csv", [*SPEED_HEADER, "min_s", "max_s"], banded)
    got = plotting.read_benchmark_csv(path)
    assert {r["task"] for r in got} == {"text", "music"}
    assert all(r["min_s"] < r["median_s"] < r["max_s"] for r in got)
    bad = write_bench_csv(tmp_path / "bad.csv", ["model", "length", "median_s"], [["a", 1, 1]])
    with pytest.raises(ValueError, match="batch_size"):
        plotting.read_benchmark_csv(bad)


REPO = Path(__file__).resolve().parents[1]
KEPT_SPEED_CSVS = sorted(
    p for d in ("docs/results", "benchmarks/results") for p in (REPO / d).rglob("sample_speed.csv")
)


@pytest.mark.parametrize("path", KEPT_SPEED_CSVS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_speed_csvs_in_the_repository_still_read_and_plot(path):
    rows = plotting.read_benchmark_csv(path)
    assert rows and {r["task"] for r in rows} <= {"text", "music"}
    fig = plotting.plot_generation_speed(rows, by_batch=True, logy=True, title="kept")
    assert fig.axes and all(ax.get_lines() for ax in fig.axes if ax.axison)


def test_plot_generation_speed_one_panel_per_task_one_line_per_model(tmp_path):
    path = write_bench_csv(tmp_path / "b.csv", SPEED_HEADER, bench_rows())
    fig = plotting.plot_generation_speed(path, path=tmp_path / "fig7.png")
    assert len(fig.axes) == 2 and "PTB" in fig.axes[0].get_title()  # text first
    for ax in fig.axes:
        assert sorted(line.get_label() for line in ax.get_lines()) == ["IAF/SCF", "LSTM"]
        assert "batch 1" in ax.get_title()
        lstm = next(line for line in ax.get_lines() if line.get_label() == "LSTM")
        assert list(lstm.get_ydata()) == pytest.approx(
            [0.01 * T * (1 + 1 / 64) for T in (10, 50, 100)]
        )
    fig = plotting.plot_generation_speed(path, all_batches=True)
    assert len(fig.axes[0].get_lines()) == 4
    # A CSV without a task column: one panel.
    single = write_bench_csv(
        tmp_path / "k.csv", ["model", "length", "batch_size", "median_s"], [["lstm", 5, 1, 0.1]]
    )
    assert len(plotting.plot_generation_speed(single).axes) == 1


def test_plot_generation_speed_by_batch_draws_the_benchmarks_figure():
    """One row of panels per batch size, the rows as the benchmark holds them (numbers, a
    band from min_s/max_s), every model under its paper label."""
    rows = [dict(zip(SPEED_HEADER, r, strict=True)) for r in bench_rows()]
    for r in rows:
        r.update(min_s=r["median_s"] * 0.9, max_s=r["median_s"] * 1.1)
    rows.append({**rows[0], "model": "lstm_nnlstm"})
    fig = plotting.plot_generation_speed(rows, by_batch=True, logy=True, title="header")
    assert len(fig.axes) == 4 and fig.get_suptitle() == "header"
    assert ["batch 1" in ax.get_title() for ax in fig.axes] == [True, True, False, False]
    assert "LSTM-ref" in [line.get_label() for line in fig.axes[0].get_lines()]
    assert all(ax.collections for ax in fig.axes)  # the bands
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="batch 7"):
        plotting.plot_generation_speed(rows, batch=7)


# ---------------------------------------------------------------------------- curves
METRIC_COLUMNS = [
    "epoch",
    "step",
    "train/elbo",
    "train/kl",
    "train/kl_weight",
    "train/loss",
    "train/recon",
    "val/kl",
    "val/nll",
    "val/recon",
]


def write_run(run: Path, version: int, steps: range, val_step: int) -> None:
    """A CSVLogger file as Lightning writes it: train rows, then a validation row."""
    folder = run / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(METRIC_COLUMNS)
        for s in steps:
            writer.writerow([0, s, 3 - 0.01 * s, 1.0, min(1.0, s / 20), 2.5, 2.0, "", "", ""])
        writer.writerow([0, val_step, *[""] * 5, 0.9, 4.2 - version, 2.1])


def test_read_metrics_merges_resumed_versions_in_step_order(tmp_path):
    write_run(tmp_path, 1, range(10, 20), 19)  # a resumed run: version_1 continues the steps
    write_run(tmp_path, 0, range(0, 10), 9)
    metrics = plotting.read_metrics(tmp_path)
    steps, values = metrics["train/elbo"]
    assert list(steps) == list(range(20))
    assert values[0] == pytest.approx(3.0) and values[-1] == pytest.approx(2.81)
    assert list(metrics["val/nll"][1]) == [4.2, 3.2]
    assert "epoch" not in metrics and "step" not in metrics
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        plotting.read_metrics(tmp_path / "nothing")


def test_plot_training_curves_panels(tmp_path):
    write_run(tmp_path, 0, range(0, 12), 11)
    fig = plotting.plot_training_curves(tmp_path, path=tmp_path / "curves.png")
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert len(titles) == 6 and titles[3] == "KL weight"
    # the last panel: validation NLL from the first step at KL weight 1 (step 20) on
    assert titles[5] == plotting.curves.ZOOM_TITLE
    assert any(t.get_text() == "KL weight never reached 1" for t in fig.axes[5].texts)
    kl_weight = fig.axes[3].get_lines()[0]
    assert list(kl_weight.get_ydata()) == pytest.approx([min(1.0, s / 20) for s in range(12)])
    assert is_png(tmp_path / "curves.png")
    # An LSTM baseline run logs no KL: its panels say so instead of failing.
    lstm = {"train/loss": ([0.0, 1.0], [2.0, 1.5]), "val/nll": ([1.0], [1.4])}
    fig = plotting.plot_training_curves(lstm)
    assert any(t.get_text() == "not logged" for ax in fig.axes for t in ax.texts)
    with pytest.raises(ValueError, match="no training metrics"):
        plotting.plot_training_curves({"other": ([0.0], [1.0])})


def test_the_zoom_keeps_full_weight_validations_and_stars_the_best(tmp_path):
    metrics = {
        "train/kl_weight": (np.arange(6.0), np.array([0, 0, 0.5, 1, 1, 1.0])),
        "val/nll": (np.array([1.0, 3, 4, 5]), np.array([90.0, 8, 7.5, 7.9])),
    }
    steps, values = plotting.curves.full_weight_nll(metrics)
    assert list(steps) == [3, 4, 5] and list(values) == [8, 7.5, 7.9]
    # the best checkpoint's final evaluation, logged beside the test numbers, is no validation
    metrics["test/nll"] = (np.array([5.0]), np.array([7.0]))
    assert list(plotting.curves.full_weight_nll(metrics)[1]) == [8, 7.5]
    for name, shift in (("a_s0", 0.0), ("a_s1", 0.25)):
        write_run(tmp_path / name, 0, range(0, 30), 29)
        csv_path = tmp_path / name / "csv" / "version_0" / "metrics.csv"
        with csv_path.open("a", newline="") as fh:  # two more validations at full weight
            csv.writer(fh).writerow([1, 40, *[""] * 5, 0.9, 3.0 + shift, 2.1])
            csv.writer(fh).writerow([2, 50, *[""] * 5, 0.9, 3.5 + shift, 2.1])
    runs = [tmp_path / "a_s0", tmp_path / "a_s1"]
    fig = plotting.plot_validation_comparison(runs, path=tmp_path / "val.png")
    lines = fig.axes[0].get_lines()  # per run: its curve, then its best point
    assert [list(line.get_ydata()) for line in lines[::2]] == [[4.2, 3.0, 3.5], [4.2, 3.25, 3.75]]
    assert [list(line.get_ydata()) for line in lines[1::2]] == [[3.0], [3.25]]
    assert lines[0].get_color() == lines[2].get_color()  # one row, two seeds: one colour
    assert (lines[0].get_linestyle(), lines[2].get_linestyle()) == ("-", "--")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["a_s0 (best 3.000)", "a_s1 (best 3.250)"]
    assert is_png(tmp_path / "val.png")


# ---------------------------------------------------------------------------- latentflow-plot
def save_checkpoint(module: pl.LightningModule, path: Path) -> Path:
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


def test_cli_run_writes_curves_and_prior_for_a_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    torch.manual_seed(0)
    module = SequenceLitModule(tiny_components(), TINY_DATA, vocab=SYMBOLS)
    save_checkpoint(module, run / "checkpoints" / "last.ckpt")
    write_run(run, 0, range(0, 6), 5)
    bench = write_bench_csv(tmp_path / "b.csv", SPEED_HEADER, bench_rows())
    main(
        ["run", str(run), "--text", TEXT, "--focus", "grew", "--grid-size", "12"]
        + ["--bench", str(bench)]
    )
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == ["curves.png", "prior.png", "speed.png"]
    assert all(is_png(Path(p)) and Path(p).parent == run / "figures" for p in written)
    assert find_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    # one figure, chosen file
    main(["prior", str(run / "checkpoints" / "last.ckpt"), "--text", TEXT, "--focus", "",
          "--grid-size", "8", "-o", str(tmp_path / "p.png")])  # fmt: skip
    assert is_png(tmp_path / "p.png")


def test_cli_skips_prior_for_wide_latents_and_reports_errors(tmp_path, capsys):
    run = tmp_path / "run"
    module = SequenceLitModule(tiny_components(latent_dim=3), TINY_DATA, vocab=SYMBOLS)
    save_checkpoint(module, run / "checkpoints" / "last.ckpt")
    write_run(run, 0, range(0, 4), 3)
    main(["run", str(run)])
    captured = capsys.readouterr()
    assert [Path(p).name for p in captured.out.split()] == ["curves.png"]
    assert "skipping prior densities" in captured.err
    with pytest.raises(SystemExit) as exc:
        main(["curves", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "latentflow-plot: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prior", str(tmp_path / "missing")])
    assert exc.value.code == 2


def test_cli_nlsq_and_speed(tmp_path):
    main(["nlsq", "-o", str(tmp_path / "n.png"), "--dpi", "40"])
    assert is_png(tmp_path / "n.png")
    bench = write_bench_csv(tmp_path / "b.csv", SPEED_HEADER, bench_rows())
    main(["speed", str(bench), "--logy", "--batch", "64", "-o", str(tmp_path / "s.png")])
    assert is_png(tmp_path / "s.png")
