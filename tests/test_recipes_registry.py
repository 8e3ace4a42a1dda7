"""latentflow.recipes: the one list of recipes, models and variants that tests, benchmarks and
figures read, checked against the YAML files and the composed configs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from latentflow import recipes

from .helpers import compose_config

ALL = recipes.names()


def test_the_registry_lists_exactly_the_experiment_files():
    files = sorted(
        str(p.relative_to(recipes.EXPERIMENT_DIR).with_suffix(""))
        for p in recipes.EXPERIMENT_DIR.rglob("*.yaml")
        if not p.name.startswith("_")
    )
    assert list(ALL) == files and len(ALL) == len(set(ALL))
    assert all(r.path.is_file() for r in recipes.all_recipes())
    assert not [n for n in ALL if n.split("/")[-1].startswith("_")]


def test_every_paper_row_has_a_recipe_at_the_paper_size():
    assert recipes.datasets() == ("jsb", "muse_data", "nottingham", "piano_midi", "ptb")
    assert recipes.main_models() == ("af_af", "af_scf", "iaf_scf", "lstm")
    ablations = {"ablation_no_nlsq", "ablation_no_af_hidden", "ablation_no_af_hidden_no_nlsq"}
    successors = set(recipes.SUCCESSORS)
    assert set(recipes.models("ptb")) == {
        *recipes.main_models(),
        "af_only",
        *ablations,
        *successors,
    }
    assert set(recipes.models("jsb")) == {*recipes.main_models(), *successors}
    for dataset in recipes.datasets():
        paper = recipes.recipes(dataset, "paper")
        assert {r.model for r in paper} == set(recipes.models(dataset))
        # the number the row is compared with; a later paper's row has none of the 2019 paper's
        assert all(bool(r.paper) != (r.model in successors) for r in paper), dataset
    assert "lstm" not in recipes.priors() and "af_only" in recipes.priors()


def test_a_recipe_reads_as_its_name_says():
    r = recipes.recipe("cpu/ptb/af_scf")
    assert (r.dataset, r.model, r.size, r.prior) == ("ptb", "af_scf", "cpu", "af_scf")
    assert r.paper == {"test_nll_bpc": 1.46}
    lstm = recipes.recipe("jsb/lstm")
    assert (lstm.size, lstm.prior, lstm.paper) == ("paper", None, {"test_nll_nats": 8.17})
    assert [r.name for r in recipes.recipes(size="cpu", dataset="jsb", model="af_af")] == [
        "cpu/jsb/af_af"
    ]
    with pytest.raises(KeyError, match="available: cpu/jsb/af_af"):
        recipes.recipe("jsb/nope")
    with pytest.raises(ValueError, match="size"):
        recipes.recipes(size="gpu")


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_composes_with_the_train_config(name, tmp_path):
    r = recipes.recipe(name)
    cfg = compose_config("train", [f"experiment={name}"], tmp_path)
    assert cfg.experiment_name == name
    assert dict(cfg.paper) == r.paper
    model = "LSTMLanguageModel" if r.prior is None else "LatentFlowModel"
    assert cfg.model._target_.endswith(model)
    assert r.dataset in cfg.tags and r.model in cfg.tags
    assert ("cpu" in cfg.tags) == (r.size == "cpu")


def test_every_recipe_names_its_prior_in_its_defaults():
    for r in recipes.all_recipes():
        text = r.path.read_text()
        wanted = "override /model: lstm" if r.prior is None else f"override /prior: {r.prior}"
        assert wanted in text, r.name


def test_variants_are_paper_priors_with_other_parts():
    names = [v.name for v in recipes.VARIANTS]
    assert len(names) == len(set(names)) and not set(names) & set(recipes.models())
    for v in recipes.VARIANTS:
        assert v.prior in recipes.priors() and v.parts
        assert recipes.overrides(v.name) == (f"prior={v.prior}", *v.parts)
    assert recipes.overrides("lstm") == ("model=lstm",)
    assert recipes.overrides("ablation_no_nlsq") == ("prior=ablation_no_nlsq",)
    with pytest.raises(KeyError, match="af_af_spline"):
        recipes.overrides("af_af+spline")


@pytest.mark.parametrize("variant", recipes.VARIANTS, ids=lambda v: v.name)
def test_every_variant_composes_and_differs_from_its_prior(variant, tmp_path):
    plain = compose_config("train", list(recipes.overrides(variant.prior)), tmp_path)
    cfg = compose_config("train", list(recipes.overrides(variant.name)), tmp_path)
    assert cfg.prior != plain.prior and cfg.model == plain.model


def test_reading_the_registry_imports_neither_hydra_nor_lightning_nor_torch():
    code = (
        "import sys; from latentflow import recipes; recipes.all_recipes()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('hydra', 'omegaconf', 'pytorch_lightning', 'lightning', 'torch')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
