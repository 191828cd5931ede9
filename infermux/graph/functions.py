"""Expand ops that ONNX defines as functions (LayerNormalization, Celu, Range, ...) into their bodies.

For an op without a kernel, ONNX's schema may carry a function body (fixed, or built from the
node and its input types).  Expanding it replaces the node by the body's nodes, with internal
tensor names made unique and attribute references resolved; the result may need further
expansion, which :func:`expand_functions` repeats until nothing changes.
"""

from __future__ import annotations

import onnx
from onnx import helper

from infermux.graph.model import Graph, Node

__all__ = ["expand_functions", "function_body"]

_MAX_ROUNDS = 8


def function_body(node: Node, opset: int, graph: Graph) -> onnx.FunctionProto | None:
    """ONNX's function body for ``node`` at ``opset``, or None when the op has none."""
    from infermux.graph.onnx_writer import _node

    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:  # noqa: BLE001 - SchemaError: not a standard op
        return None
    if schema.has_function:
        try:
            body = schema.get_function_with_opset_version(opset)
        except Exception:  # noqa: BLE001
            return schema.function_body
        # onnx returns the serialized FunctionProto here (bytes), a proto elsewhere
        return onnx.FunctionProto.FromString(body) if isinstance(body, bytes) else body
    if schema.has_context_dependent_function:
        input_types = []
        for name in node.inputs:
            vi = graph.type_of(name) if name else None
            code = vi.element_type.onnx_code if vi is not None and not vi.element_type.is_dynamic() else 0
            if name and code == 0:
                return None  # the body depends on input types we do not know
            input_types.append(helper.make_tensor_type_proto(code, None).SerializeToString()
                               if name else onnx.TypeProto().SerializeToString())
        try:
            raw = schema.get_context_dependent_function_with_opset_version(
                opset, _node(node, "all").SerializeToString(), input_types)
        except Exception:  # noqa: BLE001
            try:
                raw = schema.get_context_dependent_function(
                    _node(node, "all").SerializeToString(), input_types)
            except Exception:  # noqa: BLE001
                return None
        return onnx.FunctionProto.FromString(raw)
    return None


def _inline(node: Node, func: onnx.FunctionProto) -> list[Node]:
    from infermux.graph.onnx_reader import _attribute

    rename = {formal: actual for formal, actual in zip(func.input, node.inputs)}
    rename.update({formal: "" for formal in list(func.input)[len(node.inputs):]})
    rename.update({formal: actual for formal, actual in zip(func.output, node.outputs)})
    prefix = f"{node.name}/"
    func_opset = {o.domain or "": o.version for o in func.opset_import}

    def name(n: str) -> str:
        if not n:
            return ""
        return rename.get(n, prefix + n)

    result = []
    for i, inner in enumerate(func.node):
        attrs = {}
        for a in inner.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in node.attrs:
                    attrs[a.name] = node.attrs[a.ref_attr_name]
                continue
            attrs[a.name] = _attribute(a)
        new = Node(f"{prefix}{inner.name or inner.op_type}_{i}", inner.op_type,
                   [name(x) for x in inner.input], [name(x) for x in inner.output], attrs,
                   inner.domain or "", dict(node.rt_info))
        if (inner.domain or "") in func_opset:
            new.rt_info["opset"] = func_opset[inner.domain or ""]
        result.append(new)
    return result


def expand_functions(graph: Graph, opsets: dict[str, int], has_kernel) -> int:
    """Expand, in place, every node for which ``has_kernel(node, opset)`` is False and ONNX
    defines a function.  Returns how many nodes were expanded."""
    total = 0
    for _ in range(_MAX_ROUNDS):
        changed = 0
        new_nodes: list[Node] = []
        for node in graph.nodes:
            opset = node.rt_info.get("opset", opsets.get(node.domain or "", 1))
            if has_kernel(node, opset):
                new_nodes.append(node)
                continue
            func = function_body(node, opset, graph)
            if func is None:
                new_nodes.append(node)
                continue
            # defaults for attributes the node leaves out
            try:
                schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
                for aname, attr in schema.attributes.items():
                    if aname not in node.attrs and attr.default_value.type:
                        from infermux.graph.onnx_reader import _attribute

                        node.attrs[aname] = _attribute(attr.default_value)
            except Exception:  # noqa: BLE001
                pass
            new_nodes.extend(_inline(node, func))
            changed += 1
        graph.nodes = new_nodes
        total += changed
        if not changed:
            break
    return total
