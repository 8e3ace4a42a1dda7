"""``torch.compile`` for the flow stacks of a model (opt-in: ``compile.flows=true``)."""

from __future__ import annotations

from torch import nn

from latentflow.flows import FlowStack


def compile_flows(
    model: nn.Module, backend: str = "inductor", mode: str | None = None
) -> list[str]:
    """``torch.compile`` every outermost flow stack of ``model`` in place; returns their names.

    ``nn.Module.compile`` wraps the module's call, so parameter names, checkpoints and
    ``inverse`` (sampling) are unchanged; the density passes of training and evaluation run
    compiled. The LSTMs are left alone: Dynamo does not compile ``nn.LSTM`` (it falls back to
    eager), so compiling the whole model would only add start-up time.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, FlowStack) and not any(name.startswith(n + ".") for n in names):
            module.compile(backend=backend, mode=mode)
            names.append(name)
    return names
