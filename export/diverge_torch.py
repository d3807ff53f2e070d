"""Hops from the eager torch model straight to a torch-native artifact: torch-torchscript, torch-export,
torch-aoti, torch-executorch. The reference is the eager model's leaf-module outputs (diverge_capture).

- torch.export: the program's GraphModule is run node by node (torch.fx.Interpreter); each node carries the
  module path of the module it was traced in (`nn_module_stack`), so modules are matched **by name**: the last
  node of a module with the module's shape holds its output.
- TorchScript (torch.jit.trace keeps the module tree): the eager model is run again with each leaf module's
  output replaced by what the scripted submodule of the same qualified name returns on the same (propagated)
  input. Caveat: the code between modules (a parent's forward: flatten, residual adds) is the eager model's,
  not the traced graph's, so a fault there is not seen; the final outputs are compared by parity.
- AOTInductor and ExecuTorch are compiled: the final output is the one point compared, and the hop says why.
"""

from __future__ import annotations

import numpy as np

from crossdeploy.errors import first_line
from crossdeploy.repository import Tolerance

from .diverge_align import Hop, align
from .diverge_capture import OnnxCapture, OnnxPoint, TorchPoint

HOPS = {"torchscript": "torch -> TorchScript", "torch-export": "torch -> torch.export",
        "aoti": "torch -> AOTInductor", "executorch": "torch -> ExecuTorch"}
SCRIPTED_CAVEAT = ("each leaf module's output is its scripted submodule's on the propagated input; the code between "
                   "modules runs eagerly")
OPAQUE = {
    "aoti": "AOTInductor compiles the whole program into one shared library that exposes no intermediate tensor: "
            "the final output is the only point",
    "executorch": "the XNNPACK-delegated program is opaque to the Python runtime; ExecuTorch's ETDump can log "
                  "intermediate outputs, but mapping them to modules needs an ETRecord written at export time, which "
                  "the exporter does not write: the final output is the only point",
}


def _inputs_named(hop: Hop) -> Hop:
    for point in hop.points:
        for entry in point.inputs:
            if entry["name"] == "eager code":
                entry["is"] = "computed by a parent module's own forward code, not a leaf module"
    return hop


def torchscript_hop(repository, reference: str, variant: str, samples: np.ndarray, source: list[TorchPoint],
                    tolerance: Tolerance) -> Hop:
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import eager_leaf_outputs, scripted_submodules

    leaves = {p.module for p in source if not p.identity}
    script = open_runtime(repository, variant)
    failures: dict[str, str] = {}

    def replace(name, module, args, kwargs):
        if name not in leaves:
            return None
        scripted = modules.get(name)
        if scripted is None:
            failures[name] = "the TorchScript file has no submodule of that qualified name"
            return None
        if not hasattr(scripted, "forward"):
            failures[name] = ("its scripted submodule has no forward: torch.jit.trace never called it (a parent "
                              "computed through its weights, as the encoder layer's fast path does)")
            return None
        try:
            return scripted(*args, **kwargs)
        except Exception as error:  # a traced forward takes the traced positional arguments only
            failures[name] = f"its scripted submodule refuses the eager call's arguments: {first_line(error)}"
            return None

    try:
        modules = scripted_submodules(script)
        captured = eager_leaf_outputs(open_runtime(repository, reference), samples, replace=replace)
    finally:
        script.unload()
    points = [OnnxPoint(index, c.name, c.kind, c.name, list(c.inputs), c.name, None, c.value)
              for index, c in enumerate(captured) if c.name in leaves and c.name not in failures]
    hop = align(source, OnnxCapture(points, ["input"]), tolerance, HOPS["torchscript"], reference, variant,
                labels=("module", "scripted submodule"))
    for entry in hop.unmatched:
        entry["reason"] = failures.get(entry["module"], entry["reason"])
    hop.reason = SCRIPTED_CAVEAT if not hop.reason else f"{hop.reason}; {SCRIPTED_CAVEAT}"
    return _inputs_named(hop)


def export_hop(repository, reference: str, variant: str, samples: np.ndarray, source: list[TorchPoint],
               tolerance: Tolerance) -> Hop:
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import exported_node_outputs

    captured, placeholders, weights = exported_node_outputs(open_runtime(repository, variant), samples)
    points = [OnnxPoint(index, c.name, c.kind, c.name, list(c.inputs), c.module, None, c.value)
              for index, c in enumerate(captured)]
    return align(source, OnnxCapture(points, sorted(placeholders), weights), tolerance, HOPS["torch-export"],
                 reference, variant, labels=("module", "torch.export node"))


def compiled_hop(repository, reference: str, variant: str, samples: np.ndarray, tolerance: Tolerance,
                 format_name: str) -> Hop:
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import final_outputs

    expected = final_outputs(open_runtime(repository, reference), samples)
    got = final_outputs(open_runtime(repository, variant), samples)
    output = open_runtime(repository, variant).config.outputs[0].name
    source = [TorchPoint(output, "model output", expected)]
    capture = OnnxCapture([OnnxPoint(0, variant, format_name, output, ["input"], output, None, got)], ["input"])
    hop = align(source, capture, tolerance, HOPS[format_name], reference, variant, labels=("eager model", "artifact"))
    hop.reason = OPAQUE[format_name]
    return hop


def torch_native_hop(repository, config, reference: str, samples: np.ndarray, source: list[TorchPoint]) -> Hop:
    if config.format == "torchscript":
        return torchscript_hop(repository, reference, config.name, samples, source, config.tolerance)
    if config.format == "torch-export":
        return export_hop(repository, reference, config.name, samples, source, config.tolerance)
    return compiled_hop(repository, reference, config.name, samples, config.tolerance, config.format)


__all__ = ["HOPS", "compiled_hop", "export_hop", "torch_native_hop", "torchscript_hop"]
