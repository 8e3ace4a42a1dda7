"""The settings a user can set, each with its type and range: one table, checked once per tool
before any data, checkpoint or model is touched (``check_keys``), and read by the tests that
try a value outside every range and by the check that no key of a config goes unlisted.

Why a table and not Hydra structured configs or pydantic: the config tree is open. Model
parts, data, callbacks and loggers are ``_target_`` nodes that users point at their own
classes, whose arguments ``latentflow.components`` checks against the class itself; a typed
schema of the tree would have to know every class a user may write. What is fixed is the set
of scalar settings of the tools themselves, and a table of those reads in one place.

Keys that are deliberately not in the table, and who checks them, are in ``UNCHECKED``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from latentflow.audio import FORMATS
from latentflow.lightning.anneal import SCHEDULE_KINDS

SEED_MAX = 2**32 - 1  # what numpy and Lightning's seed_everything accept
BIG = 10**9  # "no practical upper bound" for counts
TRAIN, EVAL, SAMPLE, SWEEP = "train", "eval", "sample", "sweep"
ALL = (TRAIN, EVAL, SAMPLE)
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "bf16-true", "auto")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One setting: ``kind`` is int, number, bool or choice; ``low``/``high`` bound numbers
    (``low_open``: strictly above ``low``); ``nullable``: null means "the default"."""

    name: str
    kind: str
    tools: tuple[str, ...]
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = True

    def allowed(self) -> str:
        """What the key takes, as the error message says it."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "int":
            if self.high == BIG or self.high == math.inf:
                return f"an integer >= {int(self.low)}"
            return f"an integer in [{int(self.low)}, {int(self.high)}]"
        bracket = "(" if self.low_open else "["
        return f"a finite number in {bracket}{self.low}, {self.high}]"

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        above = self.low < value if self.low_open else self.low <= value
        return above and value <= self.high

    def check(self, cfg: Any) -> None:
        value = get(cfg, self.name)
        if value is MISSING:
            return
        if not self.ok(value):
            raise ConfigError(f"{self.name} must be {self.allowed()}, got {value!r}")

    def bad_values(self) -> list[Any]:
        """Values outside the key's range (for the tests)."""
        if self.kind == "bool":
            return ["yes", 2]
        if self.kind == "choice":
            return ["no-such-choice"]
        out: list[Any] = ["text", math.nan]
        if math.isfinite(self.low):
            out.append(self.low if self.low_open else self.low - 1)
        if math.isfinite(self.high) and self.high < BIG:
            out.append(self.high + 1)
        if self.kind == "int":
            out.append(1.5)
        return out


MISSING = object()


def get(cfg: Any, dotted: str) -> Any:
    """``cfg``'s value at a dotted key; ``MISSING`` where the path is absent."""
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return MISSING
        node = node.get(part)
    return node


def _int(name: str, tools: tuple[str, ...], low: int, high: int = BIG, **kw: Any) -> Key:
    return Key(name, "int", tools, low=low, high=high, **kw)


def _bool(name: str, tools: tuple[str, ...]) -> Key:
    return Key(name, "bool", tools, nullable=False)


SCHEMA: tuple[Key, ...] = (
    # every tool
    _int("seed", ALL, 0, SEED_MAX, nullable=False),
    _int("runtime.threads", ALL, 1),
    _bool("runtime.tune_malloc", ALL),
    # training
    _bool("overwrite", (TRAIN,)),
    _bool("test", (TRAIN,)),
    _int("train.elbo_samples", (TRAIN,), 1, nullable=False),
    _int("train.max_nonfinite_steps", (TRAIN,), 1, nullable=False),
    _int("eval.num_samples", (TRAIN, EVAL), 1),
    _int("eval.chunk_size", (TRAIN, EVAL), 1),
    _int("eval.val_num_samples", (TRAIN,), 1),
    _bool("compile.flows", (TRAIN,)),
    Key(
        "compile.mode",
        "choice",
        (TRAIN,),
        choices=(None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    ),  # fmt: skip
    Key("anneal.kind", "choice", (TRAIN,), choices=SCHEDULE_KINDS),
    _int("anneal.zero", (TRAIN,), 0),
    _int("anneal.rampup", (TRAIN,), 0),
    Key("anneal.floor", "number", (TRAIN,), low=0.0, high=1.0),
    Key("optimizer.lr", "number", (TRAIN,), low=0.0, high=1e6, low_open=True),
    # the Trainer keys the recipes expose
    _int("trainer.max_epochs", (TRAIN,), -1),
    _int("trainer.min_epochs", (TRAIN,), 0),
    _int("trainer.max_steps", (TRAIN,), -1),
    _int("trainer.accumulate_grad_batches", (TRAIN,), 1),
    Key("trainer.gradient_clip_val", "number", (TRAIN,), low=0.0, high=1e12),
    _int("trainer.check_val_every_n_epoch", (TRAIN,), 1),
    _int("trainer.log_every_n_steps", (TRAIN,), 1),
    _int("trainer.num_sanity_val_steps", (TRAIN,), -1),
    _int("trainer.num_nodes", (TRAIN,), 1),
    _int("trainer.reload_dataloaders_every_n_epochs", (TRAIN,), 0),
    Key("trainer.precision", "choice", (TRAIN,), choices=PRECISIONS),
    Key("trainer.accelerator", "choice", ALL[:2], choices=ACCELERATORS),
    _bool("trainer.deterministic", (TRAIN,)),
    _bool("trainer.enable_progress_bar", (TRAIN,)),
    _bool("trainer.enable_model_summary", (TRAIN,)),
    _bool("trainer.sync_batchnorm", (TRAIN,)),
    _bool("trainer.use_distributed_sampler", (TRAIN,)),
    # evaluation of a checkpoint
    _int("data.eval_batch_size", (EVAL,), 1),
    _int("data.num_workers", (EVAL,), 0, 1024),
    # sampling
    _int("num_samples", (SAMPLE,), 1, nullable=False),
    _int("length", (SAMPLE,), 1),
    _int("batch_size", (SAMPLE,), 1, nullable=False),
    _int("num_print", (SAMPLE,), 0),
    _bool("allow_long", (SAMPLE,)),
    _bool("argmax", (SAMPLE,)),
    Key("temperature", "number", (SAMPLE,), low=0.0, high=1e6, low_open=True, nullable=False),
    Key("midi.tempo_bpm", "number", (SAMPLE,), low=0.0, high=1000.0, low_open=True),
    Key("midi.step_beats", "number", (SAMPLE,), low=0.0, high=64.0, low_open=True),
    _int("midi.velocity", (SAMPLE,), 1, 127),
    _int("midi.program", (SAMPLE,), 0, 127),
    _bool("midi.plot", (SAMPLE,)),
    _bool("audio.enabled", (SAMPLE,)),
    Key("audio.format", "choice", (SAMPLE,), choices=tuple(FORMATS)),
    _int("audio.sample_rate", (SAMPLE,), 8000, 192000),
    _int("audio.program", (SAMPLE,), 0, 127),
    # a study (latentflow-sweep; its trials are checked as training runs)
    _int("sweep.n_trials", (SWEEP,), 1, nullable=False),
    _int("sweep.max_retry", (SWEEP,), 0, nullable=False),
    _int("sweep.top", (SWEEP,), 1, nullable=False),
    Key("sweep.poll_s", "number", (SWEEP,), low=0.0, high=3600.0, low_open=True, nullable=False),
    Key("sweep.direction", "choice", (SWEEP,), choices=("minimize", "maximize"), nullable=False),
)

# Keys a user sets that the table does not range-check, and what checks them instead.
UNCHECKED = {
    "task_name": "set by the tool",
    "experiment_name": "a label (W&B group, metrics.json)",
    "tags": "labels",
    "paper": "the paper's reference numbers of a recipe",
    "ckpt_path": "read when the run starts: rundir.read_checkpoint, one line if unreadable",
    "trust_components": "a list of module prefixes (components.check_trusted)",
    "monitor": "config_checks: a metric validation logs, and validation on",
    "splits": "config_checks: a non-empty subset of [val, test]",
    "device": "config_checks: cpu, cuda or cuda:N, CUDA present",
    "compile.backend": "config_checks: a backend torch.compile lists",
    "trainer.devices": "Lightning, turned into one line by assembly.build_trainer",
    "trainer.strategy": "a strategy name or node; Lightning, one line via build_trainer",
    "trainer.max_time": "Lightning's DD:HH:MM:SS; one line via build_trainer",
    "trainer.limit_train_batches": "config_checks: a count >= 0 or a fraction in [0, 1]",
    "trainer.limit_val_batches": "config_checks: a count >= 0 or a fraction in [0, 1]",
    "trainer.limit_test_batches": "config_checks: a count >= 0 or a fraction in [0, 1]",
    "trainer.val_check_interval": "config_checks: a count >= 1 or a fraction in (0, 1]",
    "trainer.default_root_dir": "the run directory",
    "trainer._target_": "the Trainer class (components)",
    "paths": "directories, created or read when used",
    "data.root": "the data root; the datamodule says when a file is missing",
    "audio.soundfont": "audio.check_audio: the file must exist",
    "hydra": "Hydra's own settings",
    "prior": "a node (below); for a model without a prior, size presets it does not use",
    "sweep.dir": "the study's directory, created when the first worker starts",
    "sweep.study_name": "a label (the study's name in its storage, the W&B group)",
    "sweep.storage": "study.validate_sweep_config: journal, sqlite or a URL",
    "sweep.params": "search_space.parse_space: one line naming the key it cannot read",
    "sweep.enqueue": "Optuna: trials with these values, run first",
    "sweep.sampler": "a node: components.instantiate checks its arguments against the class",
    "sweep.pruner": "a node: components.instantiate checks its arguments against the class",
}
# Groups of ``_target_`` nodes: their arguments are checked against the class they name
# (``components.instantiate``, ``config_checks.check_components``).
NODE_GROUPS = ("data", "model", "prior", "optimizer", "lr_schedule", "callbacks", "logger")


def keys_for(tool: str) -> tuple[Key, ...]:
    return tuple(k for k in SCHEMA if tool in k.tools)


def check_keys(cfg: Any, tool: str) -> None:
    """Every table key of ``tool`` present in ``cfg`` within its range, else one ConfigError."""
    for key in keys_for(tool):
        key.check(cfg)
