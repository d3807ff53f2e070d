"""Hops from the eager torch model straight to a torch-native artifact: torch-torchscript, torch-export,
torch-aoti, torch-executorch. The reference is the eager model's leaf-module outputs (diverge_capture).

- torch.export: the program's GraphModule is run node by node (torch.fx.Interpreter); each node carries the
  module path of the module it was traced in (`nn_module_stack`), so modules are matched **by name**: the last
  node of a module with the module's shape holds its output.
- TorchScript (torch.jit.trace keeps the module tree): the eager model is run again with each leaf module's
  output replaced by what the scripted submodule of the same qualified name returns on the same (propagated)
  input. A leaf the trace never called (the encoder layer's fast path computes through its submodules' weights)
  has no scripted forward: its nearest parent that has one stands for it. Caveat: the code between modules (a
  parent's forward: flatten, residual adds) is the eager model's, not the traced graph's, so a fault there is
  not seen here; parity compares the final outputs.
- AOTInductor and ExecuTorch are compiled: the final output is the one point compared, and the hop says why.
"""

from __future__ import annotations

import numpy as np

from crossdeploy.repository import Tolerance

from .diverge_align import Hop, align
from .diverge_capture import OnnxCapture, OnnxPoint, TorchPoint

HOPS = {"torchscript": "torch -> TorchScript", "torch-export": "torch -> torch.export",
        "aoti": "torch -> AOTInductor", "executorch": "torch -> ExecuTorch"}
SCRIPTED_CAVEAT = ("each leaf module's output (a parent's, for leaves the trace never called) is its scripted "
                   "submodule's on the propagated input; the code between modules runs eagerly")
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


def _replaced(leaves: list[str], modules: dict) -> dict[str, str]:
    """leaf -> the module whose scripted forward stands for it: the leaf's own, else its nearest ancestor's that
    has one (torch.jit.trace never called a submodule its parent computed through, as the encoder layer's fast
    path does, and such a submodule has no forward), outermost first when both a module and its parent qualify."""
    chosen = {}
    for leaf in leaves:
        name = leaf
        while name and not hasattr(modules.get(name), "forward"):
            name = name.rpartition(".")[0]
        chosen[leaf] = name
    outer = set(chosen.values()) - {""}
    return {leaf: next((o for o in outer if name == o or name.startswith(o + ".")), name) for leaf, name in chosen.items()}


def torchscript_hop(repository, reference: str, variant: str, samples: np.ndarray, source: list[TorchPoint],
                    tolerance: Tolerance) -> Hop:
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import eager_leaf_outputs, eager_through_scripted, scripted_submodules

    script = open_runtime(repository, variant)
    try:
        modules = scripted_submodules(script)
        chosen = _replaced([p.module for p in source if not p.identity], modules)
        stands = set(chosen.values()) - {""}
        everything = eager_leaf_outputs(open_runtime(repository, reference), samples)
        captured, failures = eager_through_scripted(open_runtime(repository, reference), samples, modules, stands)
    finally:
        script.unload()
    # the reference: each leaf that stands for itself, and each ancestor that stands for its leaves
    reference_points = [p for p in source if chosen.get(p.module, p.module) == p.module]
    reference_points += [TorchPoint(c.name, c.kind, c.value) for c in everything if c.name in stands - {p.module for p in source}]
    points = [OnnxPoint(index, c.name, c.kind, c.name, list(c.inputs), c.name, None, c.value)
              for index, c in enumerate(captured) if c.name in stands and c.name not in failures]
    hop = align(reference_points, OnnxCapture(points, ["input"]), tolerance, HOPS["torchscript"], reference, variant,
                labels=("module", "scripted submodule"))
    for entry in hop.unmatched:
        entry["reason"] = failures.get(entry["module"], entry["reason"])
    hop.unmatched += [{"module": leaf, "type": next(p.kind for p in source if p.module == leaf),
                       "reason": (f"no scripted forward of its own (torch.jit.trace never called it): compared as part of "
                                  f"{owner}" if owner else "no scripted forward of its own or of any parent")}
                      for leaf, owner in chosen.items() if owner != leaf]
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
