"""PyTorch artifacts run with their intermediate tensors kept, for export/diverge*.py: the eager model's leaf
modules, a torch.export program's nodes, a TorchScript file's submodules. Each loads through its adapter
(`Runtime.load` verifies the sha256 first) and unloads when done."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Runtime


@dataclass
class Captured:
    name: str  # module path, or node name
    kind: str  # module class, or the node's op
    value: np.ndarray
    module: str | None = None  # for a node: the innermost module path torch.export recorded for it
    inputs: tuple[str, ...] = ()
    same_as_input: bool = False  # a module that returned its very input (eval-mode Dropout)
    index: int = 0  # for a replayed call: the statement's position in the scripted forward


def _tensor(output):
    import torch

    tensor = output[0] if isinstance(output, (tuple, list)) else output
    return tensor if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() else None


def eager_leaf_outputs(runtime: Runtime, samples: np.ndarray, threads: int = 2, replace=None) -> list[Captured]:
    """The first output of every module of the eager model, in completion order (a forward hook on each).
    `replace(name, module, args, kwargs)`, if given, may return a tensor that replaces the module's output
    downstream (None: keep the module's own)."""
    import torch

    runtime.load()
    captured: dict[str, Captured] = {}
    handles = []

    producers: dict[int, str] = {}  # id of a tensor a module returned -> the module (kept alive in `alive`)
    alive = []

    def hook_for(name: str):
        def hook(module, args, kwargs, output):
            new = replace(name, module, args, kwargs) if replace is not None else None
            tensor = _tensor(output if new is None else new)
            if name not in captured and tensor is not None:
                # the very object, not equal values: a ReLU of non-negative samples computes, and is exported
                same = bool(args) and tensor is args[0]
                inputs = tuple(producers.get(id(a), "eager code") for a in args if isinstance(a, torch.Tensor))
                captured[name] = Captured(name, type(module).__name__, tensor.detach().numpy().copy(),
                                          inputs=inputs, same_as_input=same)
                producers[id(tensor)] = name
                alive.append(tensor)
            return new
        return hook

    try:
        model = runtime.model
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name), with_kwargs=True))
        torch.set_num_threads(threads)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(samples))
            producers[id(x)] = "input"
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        runtime.unload()
    return list(captured.values())


def _call(scripted, args, kwargs):
    try:
        return scripted(*args, **kwargs)
    except RuntimeError:
        # a traced forward takes the traced tensor inputs only: keyword arguments that say "no mask" are dropped
        if kwargs and all(v is None or v is False for v in kwargs.values()):
            return scripted(*args)
        raise


def eager_through_scripted(runtime: Runtime, samples: np.ndarray, modules: dict, stands: set[str]
                           ) -> tuple[list[Captured], dict[str, str]]:
    """The eager model's module outputs with each module named in `stands` computed by its scripted counterpart
    (`modules`, from scripted_submodules) on the propagated input; and, per module whose scripted forward refused
    the eager call's arguments, why (that module then keeps its eager output)."""
    from crossdeploy.errors import first_line

    failures: dict[str, str] = {}

    def replace(name, module, args, kwargs):
        if name not in stands:
            return None
        try:
            return _call(modules[name], args, kwargs)
        except Exception as error:
            failures[name] = f"its scripted submodule refuses the eager call's arguments: {first_line(error)}"
            return None

    return eager_leaf_outputs(runtime, samples, replace=replace), failures


def scripted_submodules(runtime: Runtime) -> dict[str, object]:
    """The loaded TorchScript file's submodules by qualified name (torch.jit.trace keeps the module tree)."""
    runtime.load()
    return dict(runtime.model.named_modules())


def exported_node_outputs(runtime: Runtime, samples: np.ndarray, threads: int = 2) -> tuple[list[Captured], set[str], set[str]]:
    """Every call_function node's floating output of the torch.export program, run node by node by
    torch.fx.Interpreter, with the module path its `nn_module_stack` metadata names (innermost last); and the
    names of its input placeholders and of its weights (get_attr nodes)."""
    import torch

    runtime.load()
    outputs: list[Captured] = []
    kinds: dict[str, set[str]] = {"placeholder": set(), "get_attr": set()}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            kinds.get(node.op, set()).add(node.name)
            tensor = _tensor(result)
            if node.op == "call_function" and tensor is not None:
                stack = list((node.meta.get("nn_module_stack") or {}).values())
                outputs.append(Captured(node.name, getattr(node.target, "__name__", str(node.target)),
                                        tensor.detach().numpy().copy(), stack[-1][0] if stack else None,
                                        tuple(str(a) for a in node.all_input_nodes)))
            return result

    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            Recorder(runtime.model).run(torch.from_numpy(np.ascontiguousarray(samples)))
    finally:
        runtime.unload()
    return outputs, kinds["placeholder"], kinds["get_attr"]


def final_outputs(runtime: Runtime, samples: np.ndarray) -> np.ndarray:
    """The artifact's first output through its adapter's predict, the only thing a compiled artifact exposes."""
    runtime.load()
    try:
        name = runtime.config.inputs[0].name
        return next(iter(runtime.predict({name: np.ascontiguousarray(samples)}).values()))
    finally:
        runtime.unload()


def replay_calls(runtime: Runtime, samples: np.ndarray, threads: int = 2) -> tuple[list[Captured], set[str]]:
    """Every submodule call's output of a TorchScript file whose forward is a flat sequence of attribute reads
    and submodule calls (what onnx2torch writes): replayed call by call (the same modules, the same arguments,
    in the same order), and the attributes it read. A forward with any other statement raises ValueError rather
    than being guessed at; so does a replay that does not give the file's own output. A file whose shapes are
    fixed (max_batch) runs chunk by chunk, as its adapter's predict does."""
    import torch

    runtime.load()
    try:
        torch.set_num_threads(threads)
        step = runtime.config.max_batch or len(samples)
        chunks = [_replay(runtime.model, samples[i:i + step]) for i in range(0, len(samples), step)]
    finally:
        runtime.unload()
    calls, attributes = chunks[0]
    for call, *rest in zip(calls, *(c[0] for c in chunks[1:])):
        # a tensor every chunk computes alike has no batch axis (a reshaped weight): it is kept once
        if rest and not all(r.value.shape == call.value.shape and np.array_equal(r.value, call.value) for r in rest):
            call.value = np.concatenate([call.value, *(r.value for r in rest)])
    return calls, attributes


def _replay(model, samples: np.ndarray) -> tuple[list[Captured], set[str]]:
    import torch

    graph_inputs = list(model.graph.inputs())
    x = torch.from_numpy(np.ascontiguousarray(samples))
    env, names = {graph_inputs[0]: model, graph_inputs[1]: x}, {graph_inputs[1]: "input"}
    calls, attributes = [], set()
    with torch.inference_mode():
        for index, node in enumerate(model.graph.nodes()):
            ins, out = list(node.inputs()), node.output()
            if node.kind() == "prim::GetAttr":
                env[out], names[out] = getattr(env[ins[0]], node.s("name")), node.s("name")
                attributes.add(node.s("name"))
            elif node.kind() == "prim::CallMethod" and node.s("name") == "forward":
                module = env[ins[0]]
                env[out], names[out] = module(*[env[i] for i in ins[1:]]), names[ins[0]]
                if isinstance(env[out], torch.Tensor) and env[out].is_floating_point():
                    calls.append(Captured(names[ins[0]], module.original_name, env[out].numpy().copy(),
                                          inputs=tuple(names[i] for i in ins[1:]), index=index))
            else:
                raise ValueError(f"its forward has a {node.kind()} statement, not only submodule calls")
        if not torch.equal(env[next(iter(model.graph.outputs()))], model(x)):
            raise ValueError("replaying its forward call by call does not give its own output")
    return calls, attributes
