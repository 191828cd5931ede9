"""``model.reshape``, ``set_batch`` and ``get_batch``: new input shapes, every other shape re-inferred.

Reshaping works on a copy of the graph: the new input shapes go in, every inferred shape (the
graph's ``value_info``, its subgraphs' and the outputs') is dropped and inferred again in strict
mode, and only when that succeeds are the results written back into the model (its port objects
stay the same, so ports taken before see the new shapes).  A failure leaves the model untouched
and names the op that rejected the shape.

**Batch baked into Reshape targets.**  Exporters often write the flatten before a classifier as
``Reshape(x, [1, 2048])`` or ``Reshape(x, [1, -1])``: a constant target whose first entry is the
batch the model was exported with.  OpenVINO's reshape rewrites such patterns (its "smart
reshape" passes); here, when an input's dim 0 changes, every Reshape whose data depends on that
input, whose target is a constant with ``allowzero=0``, and whose first target entry equals the
data's old dim 0, gets that entry replaced by ``0`` — ONNX's "copy this dimension from the input".
For the old shapes this is the same Reshape; for a new batch (static or dynamic) it carries the
batch through.  This covers flatten heads (ResNet, VGG, AlexNet) and channel shuffles
(``[1, 4, 28, 56, 56]`` in ShuffleNet).  A target that moves the batch elsewhere, or a Reshape
that really means "one row whatever the batch", is not rewritten; other ops with the old batch
baked into constants (Expand, Tile, ConstantOfShape) are left as they are and fail inference with
the op's name.  Rewritten nodes carry ``rt_info["reshape_batch"] = "copied from input dim 0"``.

**Dynamic shapes.**  A model reshaped to ``?`` or ranged dimensions compiles once; each inference
may use any shape inside the bounds (the request checks them and names the input otherwise).
There is no per-shape compile or cache because none is needed: the CPU plan (``devices/plan.py``)
is shape-agnostic — kernels read shapes from their inputs at run time, the steps hold only
attributes and weights, and the only shape-dependent compile-time work, folding ``Shape``/``Size``
of statically shaped tensors, simply does not happen for dynamic dimensions (that subgraph stays
in the plan).  So "the plan for a concrete shape" is the one plan, shared by every shape;
``tests/graph/test_dynamic.py`` checks that runs leave the plan untouched and that a shape run
after another gives a fresh compile's result.  Measured on the light ResNet-50 with input
``[?,3,224,224]``, batches 1 and 8 alternating cost the same as two static compiles, within the
noise of a shared machine (``tools/dynamic_overhead.py``).

>>> model.reshape({"data": [8, 3, 224, 224]})              # doctest: +SKIP
>>> model.input("data").set_layout("NCHW"); set_batch(model, -1); get_batch(model)  # doctest: +SKIP
<Dimension: ?>
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from infermux.errors import ShapeMismatchError, TensorNameError
from infermux.graph.model import Graph, Model, Node, Output, ValueInfo
from infermux.graph.shape import Dimension, PartialShape, Shape

__all__ = ["reshape_model", "set_batch", "get_batch", "to_partial_shape", "commit_rewrite"]

log = logging.getLogger(__name__)


def reshape_model(model: Model, shapes: Any) -> None:
    """Set new shapes on ``model``'s inputs and re-infer the rest (see :meth:`Model.reshape`)."""
    from infermux.graph.shape_infer import infer_model_shapes

    requested = _requested(model, shapes)
    trial = _copy_for_inference(model.graph)
    batch_changed = set()
    for i, shape in requested.items():
        old = trial.inputs[i].shape
        trial.inputs[i] = dataclasses.replace(trial.inputs[i], shape=shape)
        if old is None or len(old) == 0 or len(shape) == 0 or old[0] != shape[0]:
            batch_changed.add(trial.inputs[i].name)
    if batch_changed:
        _free_batch_in_reshapes(trial, batch_changed)
    _drop_inferred_shapes(trial)
    strict = _strict_inference_applies(model)
    infer_model_shapes(Model(trial, model.opsets, name=model.friendly_name), strict=strict,
                       checked=not strict)
    for new, old in zip(trial.outputs, model.graph.outputs):
        if new.shape is None and old.shape is not None:  # ONNX could not tell (a custom-domain op)
            new.shape = PartialShape([Dimension()] * len(old.shape))
    _commit(model.graph, trial)


# -- what the user asked for --------------------------------------------------------------------

def _requested(model: Model, shapes: Any) -> dict[int, PartialShape]:
    inputs = model.graph.inputs
    if not isinstance(shapes, Mapping):
        if len(inputs) != 1:
            raise ShapeMismatchError(
                f"model.reshape(shape) needs a model with exactly one input; this one has "
                f"{len(inputs)} ({', '.join(v.name for v in inputs)}): pass {{name: shape}}")
        return {0: to_partial_shape(shapes)}
    result = {}
    for key, value in shapes.items():
        result[_input_index(inputs, key)] = to_partial_shape(value)
    return result


def _input_index(inputs: list[ValueInfo], key: Any) -> int:
    if isinstance(key, Output):
        key = key.any_name
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= key < len(inputs):
            raise TensorNameError(f"Input index {key} is out of range: the model has {len(inputs)} "
                                  f"input(s)")
        return int(key)
    for i, v in enumerate(inputs):
        if v.name == key:
            return i
    raise TensorNameError(f"Input for tensor name '{key}' is not found.")


def to_partial_shape(value: Any) -> PartialShape:
    """A PartialShape from a list (ints, -1, None, strs, Dimensions, ``(lo, hi)``), a string such
    as ``"?,3,1..16,8..32"``, a Shape or a PartialShape."""
    if isinstance(value, PartialShape):
        return PartialShape(value)
    if isinstance(value, str):
        return PartialShape(value)
    if isinstance(value, (list, tuple, Shape, np.ndarray)):
        return PartialShape([_dimension(d) for d in value])
    raise TypeError(f"cannot read a shape from {type(value).__name__} {value!r}: use a list, a "
                    f"string like '?,3,224,224' or a PartialShape")


def _dimension(d: Any) -> Dimension:
    if isinstance(d, Dimension):
        return d
    if d is None:
        return Dimension()
    if isinstance(d, str):
        return Dimension.parse(d)
    if isinstance(d, (tuple, list)) and len(d) == 2:
        return Dimension(int(d[0]), int(d[1]))
    return Dimension(int(d))


# -- the graph copy that is re-inferred ------------------------------------------------------------

def _copy_for_inference(graph: Graph) -> Graph:
    """A copy whose nodes, ports and weight dict may change; arrays are shared."""
    nodes = []
    for n in graph.nodes:
        attrs = {k: _copy_for_inference(v) if isinstance(v, Graph) else
                 [_copy_for_inference(g) if isinstance(g, Graph) else g for g in v] if isinstance(v, list) else v
                 for k, v in n.attrs.items()}
        nodes.append(dataclasses.replace(n, inputs=list(n.inputs), outputs=list(n.outputs),
                                         attrs=attrs, rt_info=dict(n.rt_info)))
    return dataclasses.replace(
        graph, nodes=nodes,
        inputs=[dataclasses.replace(v) for v in graph.inputs],
        outputs=[dataclasses.replace(v) for v in graph.outputs],
        initializers=dict(graph.initializers), value_info=dict(graph.value_info))


def _drop_inferred_shapes(graph: Graph, top: bool = True) -> None:
    """Forget every inferred shape (outputs keep their element type) so nothing stale survives."""
    graph.value_info = {}
    for i, out in enumerate(graph.outputs):
        graph.outputs[i] = dataclasses.replace(out, shape=None)
    for node in graph.nodes:
        for sub in node.subgraphs():
            _drop_inferred_shapes(sub, top=False)


def _commit(target: Graph, trial: Graph) -> None:
    """Write the re-inferred graph into the model's graph, keeping its port objects."""
    target.nodes, target.initializers, target.value_info = trial.nodes, trial.initializers, trial.value_info
    for mine, new in zip(target.inputs + target.outputs, trial.inputs + trial.outputs):
        mine.shape, mine.element_type, mine.kind = new.shape, new.element_type, new.kind


# -- Reshape targets that bake the old batch ---------------------------------------------------------

def _free_batch_in_reshapes(graph: Graph, changed_inputs: set[str]) -> int:
    """Replace a leading old-batch entry of constant Reshape targets by 0 (copy from input)."""
    downstream = _reachable(graph, changed_inputs)
    count = 0
    for node in graph.nodes:
        if node.op_type != "Reshape" or node.domain or node.attrs.get("allowzero", 0):
            continue
        if not node.inputs or node.inputs[0] not in downstream:
            continue
        old = graph.type_of(node.inputs[0])
        if old is None or old.shape is None or len(old.shape) == 0 or old.shape[0].is_dynamic:
            continue
        if _rewrite_target(graph, node, old.shape[0].get_length()):
            count += 1
    if count:
        log.debug("reshape: %d Reshape target(s) now copy the batch from their input", count)
    return count


def _rewrite_target(graph: Graph, node: Node, old_dim0: int) -> bool:
    if "shape" in node.attrs and len(node.inputs) < 2:  # Reshape-1: the target is an attribute
        target = list(node.attrs["shape"])
        if not target or target[0] != old_dim0 or old_dim0 <= 0:
            return False
        node.attrs["shape"] = [0] + target[1:]
    else:
        name = node.inputs[1] if len(node.inputs) > 1 else ""
        target = _constant_value(graph, name)
        if target is None or target.ndim != 1 or target.size == 0 or int(target[0]) != old_dim0 or old_dim0 <= 0:
            return False
        new = target.copy()
        new[0] = 0
        new_name = _unique(graph, f"{node.name}/target_shape_batch_from_input")
        graph.initializers[new_name] = new
        node.inputs[1] = new_name
    node.rt_info["reshape_batch"] = "copied from input dim 0"
    return True


def _constant_value(graph: Graph, name: str) -> np.ndarray | None:
    if not name:
        return None
    if name in graph.initializers:
        return np.asarray(graph.initializers[name])
    for n in graph.nodes:
        if n.op_type == "Constant" and not n.domain and n.outputs[:1] == [name]:
            if isinstance(n.attrs.get("value"), np.ndarray):
                return n.attrs["value"]
            if "value_ints" in n.attrs:
                return np.asarray(n.attrs["value_ints"], dtype=np.int64)
    return None


def _reachable(graph: Graph, sources: set[str]) -> set[str]:
    """Tensor names computed (transitively) from ``sources``; nodes are in topological order."""
    reached = set(sources)
    for node in graph.nodes:
        reads = {i for i in node.inputs if i}
        for sub in node.subgraphs():
            reads |= sub.free_names()
        if reads & reached:
            reached.update(o for o in node.outputs if o)
    return reached


def _unique(graph: Graph, base: str) -> str:
    taken = set(graph.initializers) | {o for n in graph.nodes for o in n.outputs} | {v.name for v in graph.inputs}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


# -- batch by layout ---------------------------------------------------------------------------------

def _batch_inputs(model: Model) -> list[tuple[int, int]]:
    """(input index, axis of N) for every input whose layout names N."""
    found = []
    for i, info in enumerate(model.graph.inputs):
        layout = info.layout
        if layout is not None and layout.has_name("N") and info.shape is not None:
            found.append((i, layout.index_in("N", len(info.shape))))
    return found


def _no_batch_error(model: Model, action: str) -> ShapeMismatchError:
    lines = []
    for i, info in enumerate(model.graph.inputs):
        layout = info.layout.to_string() if info.layout is not None else "[...]"
        lines.append(f"{i}: {{ name='{info.name}', shape={info.shape}, layout={layout}, "
                     f"no batch specified }}")
    return ShapeMismatchError(
        f"{action} fails due to batch is not set in any layout for any input. Available inputs:\n"
        + "\n".join(lines) + "\n---\nPlease use 'set_layout' API to set layout with batch dimension, "
        "e.g. `model.get_parameters()[index].set_layout(\"NCHW\")` (or model.input(index).set_layout)")


def get_batch(model: Model) -> Dimension:
    """The batch dimension of the inputs whose layout has N (they must agree).

    >>> model.input(0).set_layout("NCHW"); get_batch(model)    # doctest: +SKIP
    <Dimension: 1>
    """
    found = _batch_inputs(model)
    if not found:
        raise _no_batch_error(model, "Get original batch size")
    dims = {str(model.graph.inputs[i].shape[axis]): model.graph.inputs[i].shape[axis] for i, axis in found}
    if len(dims) > 1:
        listing = ", ".join(f"'{model.graph.inputs[i].name}': {model.graph.inputs[i].shape[axis]}"
                            for i, axis in found)
        raise ShapeMismatchError(f"Get original batch size fails due to conflicting batch values "
                                 f"for inputs: {listing}")
    return next(iter(dims.values()))


def set_batch(model: Model, batch_size: int | Dimension | str = -1) -> None:
    """Reshape every input whose layout has N to batch ``batch_size`` (an int, -1, a Dimension or
    ``"1..8"``); the other inputs keep their shapes.

    >>> model.input(0).set_layout("NCHW"); set_batch(model, 4)  # doctest: +SKIP
    """
    found = _batch_inputs(model)
    if not found:
        raise _no_batch_error(model, "Set batch size")
    batch = _dimension(batch_size)
    shapes = {}
    for i, axis in found:
        dims = list(model.graph.inputs[i].shape)
        dims[axis] = batch
        shapes[i] = PartialShape(dims)
    reshape_model(model, shapes)


def commit_rewrite(model: Model, rewrite) -> None:
    """Run ``rewrite(graph)`` on a copy of the model's graph, re-infer every shape strictly, and only
    then make the copy the model's graph (used by the PrePostProcessor; ports may change)."""
    from infermux.graph.shape_infer import infer_model_shapes

    strict = _strict_inference_applies(model)
    trial = _copy_for_inference(model.graph)
    rewrite(trial)
    _drop_inferred_shapes(trial)
    infer_model_shapes(Model(trial, model.opsets, name=model.friendly_name), strict=strict,
                       checked=not strict)
    model.graph = trial


def _strict_inference_applies(model: Model) -> bool:
    """Whether ONNX's strict inference accepts the model as it is.

    Some real models break a rule strict inference enforces while every runtime runs them (e.g.
    ``If`` branches that declare inputs, as in Silero VAD v4).  Strict inference cannot judge a
    reshape of such a model, so it is inferred leniently (our own consistency checks still run)."""
    from infermux.errors import ShapeMismatchError
    from infermux.graph.shape_infer import infer_model_shapes

    probe = _copy_for_inference(model.graph)
    _drop_inferred_shapes(probe)
    try:
        infer_model_shapes(Model(probe, model.opsets, name=model.friendly_name), strict=True)
    except ShapeMismatchError as exc:
        log.info("model '%s' fails ONNX's strict shape inference as read (%s); its reshapes are "
                 "inferred leniently", model.friendly_name, exc)
        return False
    return True
