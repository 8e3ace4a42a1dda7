"""The settings table (``latentflow.schema``): every key refuses every value outside its range in
one line naming it, through each tool that reads it; the command lines say so with exit 2
before anything is written; and no settable key of any tool or recipe is left out of the table
(a new key must be added to it, or to ``UNCHECKED`` with what checks it instead)."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import sys
import time

import pytest
from omegaconf import OmegaConf

from latentflow import config_checks, recipes, schema, study

from .helpers import compose_config

VALIDATE = {
    "train": config_checks.validate_train_config,
    "eval": config_checks.validate_eval_config,
    "sample": config_checks.validate_sample_config,
    "sweep": study.validate_sweep_config,  # latentflow-sweep: a study's keys, then a trial's
}
BASE = {"train": [], "eval": ["ckpt_path=x.ckpt"], "sample": ["ckpt_path=x.ckpt"], "sweep": []}
CASES = [
    pytest.param(tool, key, bad, id=f"{tool}-{key.name}={bad!r}")
    for key in schema.SCHEMA
    for tool in key.tools
    for bad in key.bad_values()
]


@functools.cache
def composed(tool: str):
    return compose_config(tool, BASE[tool])


def with_value(tool: str, key: str, value):
    cfg = copy.deepcopy(composed(tool))
    OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.mark.parametrize("tool,key,bad", CASES)
def test_every_value_out_of_range_is_one_line_naming_the_key(tool, key, bad):
    with pytest.raises(schema.ConfigError) as err:
        VALIDATE[tool](with_value(tool, key.name, bad))
    message = str(err.value)
    assert message.startswith(f"{key.name} must be {key.allowed()}"), message
    assert "\n" not in message


@pytest.mark.parametrize("key", schema.SCHEMA, ids=lambda k: k.name)
def test_values_inside_the_range_pass(key):
    inside = {"bool": [True, False], "choice": list(key.choices)}.get(key.kind)
    if inside is None:
        low = key.low if math.isfinite(key.low) else 0
        high = key.high if math.isfinite(key.high) else low + 10
        inside = [int(low) + (1 if key.low_open else 0), int(min(high, low + 10))]
        if key.kind == "number":
            inside.append((low + min(high, low + 10)) / 2)
    for tool in key.tools:
        for value in inside:
            if key.name == "trainer.accelerator" and value in ("gpu", "cuda"):
                continue  # the machine rule, tested in test_hostile_inputs
            if key.name == "trainer.min_epochs":  # must not exceed max_epochs (Lightning)
                value = min(value, 1)
            VALIDATE[tool](with_value(tool, key.name, value))


def leaves(node, prefix: str = ""):
    """The settable keys of a composed config: scalars and lists, not the inside of the
    ``_target_`` nodes of the component groups (their arguments are checked by the class)."""
    if isinstance(node, dict):
        top = prefix.split(".", 1)[0]
        if "_target_" in node and top in schema.NODE_GROUPS:
            return
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif node is not None or prefix.split(".", 1)[0] not in schema.NODE_GROUPS:
        yield prefix  # (a null slot of a component group, e.g. callbacks.early_stopping: none)


def unlisted(tool: str, overrides: list[str]) -> list[str]:
    cfg = OmegaConf.to_container(compose_config(tool, overrides), resolve=False)
    known = {k.name for k in schema.keys_for(tool)}
    if tool == "sweep":  # a study's config is a trial's (train) with the sweep node on top
        known |= {k.name for k in schema.keys_for("train")}
    return [
        key
        for key in leaves(cfg)
        if key not in known
        and not any(key == u or key.startswith(f"{u}.") for u in schema.UNCHECKED)
    ]


@pytest.mark.parametrize("tool", ["train", "eval", "sample", "sweep"])
def test_no_key_of_a_tool_is_left_out_of_the_table(tool):
    assert unlisted(tool, BASE[tool]) == []


@pytest.mark.slow
def test_no_key_of_any_recipe_is_left_out_of_the_table():
    missing = {
        name: unlisted("train", [f"experiment={name}"])
        for name in recipes.names()
        if unlisted("train", [f"experiment={name}"])
    }
    assert missing == {}


def test_the_table_check_can_fail():
    """A key unknown to the table is caught by the completeness check."""
    assert unlisted("train", ["+train.new_setting=3"]) == ["train.new_setting"]


def run_cli_in_process(tool: str, args: list[str]) -> tuple[int, str, float]:
    from latentflow import evaluate, sample, sweep, train

    module = {"train": train, "eval": evaluate, "sample": sample, "sweep": sweep}[tool]
    argv, err = sys.argv, io.StringIO()
    sys.argv = [f"latentflow-{tool}", *args]
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err):
            module.cli()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
    return code, err.getvalue(), time.perf_counter() - start


CLI_CASES = [
    pytest.param(tool, key, key.bad_values()[-1], id=f"{tool}-{key.name}")
    for key in schema.SCHEMA
    for tool in key.tools
]


@pytest.mark.slow
@pytest.mark.parametrize("tool,key,bad", CLI_CASES)
def test_the_command_line_refuses_it_in_one_line_writing_nothing(tool, key, bad, tmp_path):
    out = tmp_path / "run"
    value = "'no-such-choice'" if bad == "no-such-choice" else bad
    args = [*BASE[tool], f"++{key.name}={value}", f"hydra.run.dir={out}"]
    code, stderr, seconds = run_cli_in_process(tool, args)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"latentflow-{tool}: error: {key.name} ")
    assert not out.exists()
    assert seconds < 10
