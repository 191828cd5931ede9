"""Stateful models: turn input/output pairs into variables (OpenVINO's ``MakeStateful``).

``make_stateful(model, {"h_in": "h_out"})`` removes input ``h_in`` and output ``h_out`` and adds
``ReadValue(variable "h_inh_out") -> h_in`` and ``h_out -> Assign(same variable)``: the state
then stays inside the runtime, per infer request, starting from zeros (``reset_state`` returns
there).  The variable id is the concatenation of the two names, as in OpenVINO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from infermux.errors import InfermuxError, TensorNameError
from infermux.graph.model import Model, Node
from infermux.ops.state import STATE_DOMAIN

__all__ = ["make_stateful", "is_stateful"]


def is_stateful(model: Model) -> bool:
    """True if the model reads or writes variables."""
    return any(n.domain == STATE_DOMAIN and n.op_type in ("ReadValue", "Assign") for n in model.graph.nodes)


def make_stateful(model: Model, pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Model:
    """Turn each (input name, output name) pair into a variable, in place; returns the model."""
    graph = model.graph
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    for in_name, out_name in items:
        in_name = getattr(in_name, "any_name", in_name)
        out_name = getattr(out_name, "any_name", out_name)
        inputs = {v.name: v for v in graph.inputs}
        outputs = {v.name: v for v in graph.outputs}
        if in_name not in inputs:
            raise TensorNameError(f"make_stateful: the model has no input '{in_name}'; inputs are "
                                  f"{', '.join(inputs)}")
        if out_name not in outputs:
            raise TensorNameError(f"make_stateful: the model has no output '{out_name}'; outputs are "
                                  f"{', '.join(outputs)}")
        vi = inputs[in_name]
        if vi.shape is None or vi.shape.is_dynamic:
            raise InfermuxError(f"make_stateful: input '{in_name}' has the dynamic shape {vi.shape}; "
                                f"a variable needs a static shape, reshape the model first")
        variable_id = in_name + out_name
        attrs = {"variable_id": variable_id,
                 "variable_shape": [d.get_length() for d in vi.shape],
                 "variable_type": vi.element_type.onnx_code}
        read = Node(f"{variable_id}/ReadValue", "ReadValue", [], [in_name], attrs, STATE_DOMAIN)
        write = Node(f"{variable_id}/Assign", "Assign", [out_name], [f"{out_name}/assigned"],
                     {"variable_id": variable_id}, STATE_DOMAIN)
        graph.inputs = [v for v in graph.inputs if v.name != in_name]
        graph.outputs = [v for v in graph.outputs if v.name != out_name]
        graph.value_info[in_name] = vi
        graph.nodes = [read] + graph.nodes + [write]
    model.opsets.setdefault(STATE_DOMAIN, 1)
    return model
