"""The recipes: every ``experiment=`` config of the package, read from its YAML files.

A recipe is one row of the paper's tables at the paper's sizes (``jsb/af_af``, ``ptb/lstm``) or
at a width that trains on two CPU cores (``cpu/ptb/af_scf``). Its name is what ``experiment=``
takes; the folders say its dataset and size and the file name its model: a prior config
(``af_af``, ``iaf_scf``, ``ablation_no_nlsq``, ...) or ``lstm``, the baseline. Files whose
name starts with ``_`` hold what the recipes of a folder share and are no recipes.

A variant is a paper prior with other parts (a spline transform, an attention conditioner):
beyond the paper, it has no recipe of its own and runs as ``prior=<prior>`` plus its parts.
Tests and benchmarks name models and variants as listed here.

Plain Python and PyYAML: nothing here imports Hydra, OmegaConf, Lightning or torch.

>>> recipe("cpu/ptb/af_scf").dataset, recipe("cpu/ptb/af_scf").size
('ptb', 'cpu')
>>> overrides("iaf_scf_attention")
('prior=iaf_scf', 'conditioner=attention')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

EXPERIMENT_DIR = Path(__file__).resolve().parent / "conf" / "experiment"
SIZES = ("paper", "cpu")
LSTM = "lstm"
# Rows of a later paper built from the same parts, with no number in the 2019 paper's tables:
# TarFlowLM (Zhang, Zhai, Gu et al. 2025), whose prior config also picks its encoder/decoder.
SUCCESSORS = ("tarflowlm",)


@dataclass(frozen=True)
class Recipe:
    """One ``experiment=`` config: a row of the paper's tables, at one size."""

    name: str  # what experiment= takes: "jsb/af_af", "cpu/ptb/af_scf"
    dataset: str  # "ptb", "jsb", "nottingham", "piano_midi" or "muse_data"
    model: str  # a prior config name ("af_af", "ablation_no_nlsq", ...) or "lstm"
    size: str  # "paper" (the paper's sizes) or "cpu" (a width for two CPU cores)
    paper: dict[str, float] = field(default_factory=dict, hash=False)  # the paper's numbers

    @property
    def path(self) -> Path:
        """The recipe's YAML file."""
        return EXPERIMENT_DIR / f"{self.name}.yaml"

    @property
    def prior(self) -> str | None:
        """The prior config of a flow row; None for the LSTM baseline."""
        return None if self.model == LSTM else self.model


@dataclass(frozen=True)
class Variant:
    """A paper prior with other parts, beyond the paper: ``prior=<prior>`` and ``parts``."""

    name: str
    prior: str
    parts: tuple[str, ...]


VARIANTS: tuple[Variant, ...] = (
    Variant("af_af_spline", "af_af", ("transform=spline",)),
    Variant("af_af_affine", "af_af", ("transform=affine",)),
    Variant("af_af_attention", "af_af", ("conditioner=attention",)),
    Variant("af_scf_spline", "af_scf", ("transform=spline",)),
    Variant("iaf_scf_spline", "iaf_scf", ("transform=spline",)),
    Variant("iaf_scf_attention", "iaf_scf", ("conditioner=attention",)),
    Variant("iaf_scf_attention_spline", "iaf_scf", ("conditioner=attention", "transform=spline")),
    Variant("af_only_spline", "af_only", ("transform=spline",)),
    Variant("ablation_no_af_hidden_spline", "ablation_no_af_hidden", ("transform=spline",)),
)


def read_recipe(path: Path) -> Recipe:
    """The recipe of one YAML file under ``EXPERIMENT_DIR``."""
    parts = path.relative_to(EXPERIMENT_DIR).with_suffix("").parts
    size = "cpu" if parts[0] == "cpu" else "paper"
    folders = parts[1:] if size == "cpu" else parts
    if len(folders) != 2:
        raise ValueError(f"{path}: a recipe is <dataset>/<model>.yaml or cpu/<dataset>/<model>")
    content = yaml.safe_load(path.read_text()) or {}
    paper = {str(k): float(v) for k, v in (content.get("paper") or {}).items()}
    return Recipe("/".join(parts), folders[0], folders[1], size, paper)


@functools.cache
def all_recipes() -> tuple[Recipe, ...]:
    """Every recipe of the package, sorted by name."""
    files = (p for p in EXPERIMENT_DIR.rglob("*.yaml") if not p.name.startswith("_"))
    return tuple(sorted((read_recipe(p) for p in files), key=lambda r: r.name))


def recipes(
    dataset: str | None = None, size: str | None = None, model: str | None = None
) -> tuple[Recipe, ...]:
    """The recipes of a dataset, a size and/or a model (all of them by default)."""
    if size is not None and size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return tuple(
        r
        for r in all_recipes()
        if dataset in (None, r.dataset) and size in (None, r.size) and model in (None, r.model)
    )


def names(dataset: str | None = None, size: str | None = None) -> tuple[str, ...]:
    """The names ``experiment=`` takes, sorted."""
    return tuple(r.name for r in recipes(dataset, size))


def recipe(name: str) -> Recipe:
    """The recipe ``experiment=<name>`` runs."""
    found = [r for r in all_recipes() if r.name == name]
    if not found:
        raise KeyError(f"no recipe {name!r} (available: {', '.join(names())})")
    return found[0]


def datasets() -> tuple[str, ...]:
    """The datasets with a recipe, sorted."""
    return tuple(sorted({r.dataset for r in all_recipes()}))


def models(dataset: str | None = None) -> tuple[str, ...]:
    """The models with a recipe (of ``dataset``), sorted; the LSTM baseline among them."""
    return tuple(sorted({r.model for r in recipes(dataset)}))


def priors() -> tuple[str, ...]:
    """The prior of every flow row of the paper's tables, sorted."""
    return tuple(m for m in models() if m != LSTM)


def main_models() -> tuple[str, ...]:
    """The models every dataset has a recipe for (Table 3's rows; PTB adds the AF-only row and
    the ablations of Tables 1-2), sorted."""
    shared = set.intersection(*(set(models(d)) for d in datasets()))
    return tuple(sorted(shared))


def variant(name: str) -> Variant:
    """The variant called ``name``."""
    found = [v for v in VARIANTS if v.name == name]
    if not found:
        raise KeyError(f"no variant {name!r} (available: {', '.join(v.name for v in VARIANTS)})")
    return found[0]


def overrides(name: str) -> tuple[str, ...]:
    """The config overrides that build a model of a recipe or a variant, by name:
    ``("model=lstm",)``, ``("prior=af_af",)``, ``("prior=af_af", "transform=spline")``."""
    if name == LSTM:
        return ("model=lstm",)
    if name in priors():
        return (f"prior={name}",)
    v = variant(name)
    return (f"prior={v.prior}", *v.parts)
