"""Graph fusions for the CPU plugin: standard ONNX subgraphs of transformer blocks rewritten into
the ``infermux`` ops of :mod:`infermux.ops.fused`, whose compiled kernels make one pass where
the subgraph made several.

Each fusion is a function ``fuse_x(graph, opsets) -> int`` (how many it made) that rewrites the
graph in place; :func:`fuse_all` runs them in an order where each one's output feeds the next:

1. :func:`fuse_layernorm_chain`: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add
   (LayerNorm as exported at opset < 17) -> ``LayerNorm``.
2. :func:`fuse_gelu`: Div(x, sqrt 2), Erf, Add 1, Mul x, Mul 0.5 in its usual orders -> ``Gelu``.
3. :func:`fuse_attention`: Reshape/Transpose head splits, MatMul, scale, Softmax, MatMul,
   Transpose/Reshape head merge -> ``SelfAttention(Q, K, V)``.
4. :func:`fuse_matmul_bias`: MatMul by a constant, Add of a constant bias, optionally Relu or
   Gelu -> ``FusedMatMul``.
5. :func:`merge_qkv`: the three ``FusedMatMul`` projections of one input feeding a
   ``SelfAttention`` -> one ``FusedMatMul`` with concatenated weights (the attention scale
   folded into the Q columns) and ``SelfAttention`` of the packed result.
6. :func:`fuse_skip_layernorm`: Add of two tensors feeding a LayerNorm -> ``LayerNorm`` with a
   skip input.
7. :func:`fuse_batchnorm_activation`: inference BatchNormalization (constant statistics), and
   the Relu after it -> ``ChannelAffine`` (one pass instead of three).
8. :func:`fuse_add_activation`: Add of two computed tensors and the Relu after it ->
   ``AddActivation`` (the residual join of ResNets).

A fusion fires only when every intermediate tensor it removes has no other reader and is not a
graph output, and when the constants it relies on have the values it assumes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from infermux.graph.model import Graph, Node

__all__ = [
    "FUSED_DOMAIN",
    "fuse_add_activation",
    "fuse_all",
    "fuse_attention",
    "fuse_batchnorm_activation",
    "fuse_gelu",
    "fuse_layernorm_chain",
    "fuse_matmul_bias",
    "fuse_skip_layernorm",
    "merge_qkv",
]

FUSED_DOMAIN = "infermux"
_REL_TOL = 1e-6  # how close a constant must be to the value a pattern assumes


class _Rewrite:
    """Producers, consumers and constants of a graph, and the edits collected against it."""

    def __init__(self, graph: Graph, opsets: dict[str, int]):
        self.graph = graph
        self.opsets = opsets
        self.producers = graph.producers()
        self.consumers = graph.consumers()
        self.outputs = {o.name for o in graph.outputs}
        self.removed: set[int] = set()
        self.added: dict[int, list[Node]] = {}  # id(anchor node) -> nodes to put in its place

    def const(self, name: str):
        return self.graph.initializers.get(name) if name else None

    def scalar(self, name: str) -> float | None:
        """The value of a one-element float constant."""
        value = self.const(name)
        if value is None or value.size != 1 or value.dtype.kind != "f":
            return None
        return float(value.reshape(-1)[0])

    def producer(self, name: str, op_type: str, domain: str = "") -> Node | None:
        node = self.producers.get(name)
        if node is None or node.op_type != op_type or node.domain != domain \
                or id(node) in self.removed:
            return None
        return node

    def only_reader(self, name: str) -> Node | None:
        """The single node reading ``name``, if it is not also a graph output."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.outputs or id(readers[0]) in self.removed:
            return None
        return readers[0]

    def private(self, *names: str) -> bool:
        """Every tensor in ``names`` is read by exactly one node and is not a graph output."""
        return all(self.only_reader(n) is not None for n in names)

    def opset(self, node: Node) -> int:
        return node.rt_info.get("opset", self.opsets.get(node.domain or "", 1))

    def new_const(self, base: str, value: np.ndarray) -> str:
        name, i = base, 0
        while name in self.graph.initializers or name in self.producers:
            i += 1
            name = f"{base}_{i}"
        self.graph.initializers[name] = value
        return name

    def replace(self, old: list[Node], new: Node, anchor: Node | None = None) -> None:
        """Drop ``old``; put ``new`` where ``anchor`` (default: the last of ``old``) was."""
        anchor = anchor or max(old, key=self._position)
        for node in old:
            self.removed.add(id(node))
        self.added.setdefault(id(anchor), []).append(new)

    def _position(self, node: Node) -> int:
        return next(i for i, n in enumerate(self.graph.nodes) if n is node)

    def commit(self) -> None:
        nodes = []
        for node in self.graph.nodes:
            nodes.extend(self.added.get(id(node), ()))
            if id(node) not in self.removed:
                nodes.append(node)
        self.graph.nodes = nodes


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= _REL_TOL * abs(target)


def _other(node: Node, name: str) -> str | None:
    """The other input of a two-input node, given one of them."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    return b if a == name else a if b == name else None


def _fused(op_type: str, name: str, inputs: list[str], outputs: list[str], **attrs) -> Node:
    return Node(name=name, op_type=op_type, inputs=inputs, outputs=outputs, attrs=attrs,
                domain=FUSED_DOMAIN)


def _is(node: Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and not node.domain


# -- LayerNorm from its opset < 17 spelling ----------------------------------------------------

def _reduce_axes(rw: _Rewrite, node: Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = rw.const(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    return list(node.attrs.get("axes", [])) or None


def _is_last_axis_mean(rw: _Rewrite, node: Node | None) -> bool:
    return (_is(node, "ReduceMean") and node.attrs.get("keepdims", 1) == 1
            and _reduce_axes(rw, node) == [-1])


def fuse_layernorm_chain(graph: Graph, opsets: dict[str, int]) -> int:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis -> ``LayerNorm``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for sub in list(graph.nodes):
        if not _is(sub, "Sub") or id(sub) in rw.removed:
            continue
        x, mean_name = sub.inputs
        mean = rw.producer(mean_name, "ReduceMean")
        if not _is_last_axis_mean(rw, mean) or mean.inputs[0] != x or not rw.private(mean_name):
            continue
        d = sub.outputs[0]
        readers = rw.consumers.get(d, [])
        square = next((n for n in readers if (_is(n, "Pow") and _close(rw.scalar(n.inputs[1]), 2.0))
                       or (_is(n, "Mul") and n.inputs == [d, d])), None)
        div = next((n for n in readers if _is(n, "Div") and n.inputs[0] == d), None)
        if square is None or div is None or len(readers) != 2 or d in rw.outputs:
            continue
        var = rw.only_reader(square.outputs[0])
        add_eps = var and rw.only_reader(var.outputs[0])
        sqrt = add_eps and rw.only_reader(add_eps.outputs[0])
        if not (_is_last_axis_mean(rw, var) and _is(add_eps, "Add") and _is(sqrt, "Sqrt")):
            continue
        eps = rw.scalar(_other(add_eps, var.outputs[0]) or "")
        if eps is None or div.inputs[1] != sqrt.outputs[0] or not rw.private(sqrt.outputs[0]):
            continue
        mul = rw.only_reader(div.outputs[0])
        gamma = _other(mul, div.outputs[0]) if _is(mul, "Mul") else None
        if gamma is None or rw.const(gamma) is None:
            continue
        chain = [mean, sub, square, var, add_eps, sqrt, div, mul]
        add = rw.only_reader(mul.outputs[0])
        beta = _other(add, mul.outputs[0]) if _is(add, "Add") else None
        if beta is not None and rw.const(beta) is not None:
            chain.append(add)
        else:
            beta = ""
        rw.replace(chain, _fused("LayerNorm", sub.name, [x, gamma, beta], chain[-1].outputs[:1],
                                 axis=-1, epsilon=eps))
        count += 1
    rw.commit()
    return count


# -- Gelu ------------------------------------------------------------------------------------

def _gelu_tail(rw: _Rewrite, x: str, one_plus_erf: str) -> tuple[list[Node], str] | None:
    """The Muls turning ``1 + erf`` into ``x * (1 + erf) * 0.5``: (nodes, output) or None."""
    m1 = rw.only_reader(one_plus_erf)
    if not _is(m1, "Mul"):
        return None
    other = _other(m1, one_plus_erf)
    if other == x:  # x * (1 + erf), then * 0.5
        m2 = rw.only_reader(m1.outputs[0])
        if _is(m2, "Mul") and _close(rw.scalar(_other(m2, m1.outputs[0]) or ""), 0.5):
            return [m1, m2], m2.outputs[0]
        return None
    if _close(rw.scalar(other or ""), 0.5):  # (1 + erf) * 0.5, then * x
        m2 = rw.only_reader(m1.outputs[0])
        if _is(m2, "Mul") and _other(m2, m1.outputs[0]) == x:
            return [m1, m2], m2.outputs[0]
        return None
    half = rw.producer(other or "", "Mul")  # (x * 0.5) * (1 + erf)
    if half is not None and _close(rw.scalar(_other(half, x) or ""), 0.5):
        nodes = [m1] + ([half] if rw.private(half.outputs[0]) else [])
        return nodes, m1.outputs[0]
    return None


def _erf_argument(rw: _Rewrite, pre: Node | None) -> str | None:
    """x, when ``pre`` computes x / sqrt(2) (as a Div, or a Mul by 1 / sqrt(2))."""
    if _is(pre, "Div") and _close(rw.scalar(pre.inputs[1]), math.sqrt(2)):
        return pre.inputs[0]
    if _is(pre, "Mul"):
        for i in (0, 1):
            if _close(rw.scalar(pre.inputs[i]), math.sqrt(0.5)):
                return pre.inputs[1 - i]
    return None


def fuse_gelu(graph: Graph, opsets: dict[str, int]) -> int:
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` -> ``Gelu(x)``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for erf in list(graph.nodes):
        if not _is(erf, "Erf") or id(erf) in rw.removed:
            continue
        scaled = erf.inputs[0]
        pre = rw.producers.get(scaled)
        x = _erf_argument(rw, pre)
        if x is None:
            continue
        add = rw.only_reader(erf.outputs[0])
        is_add = _is(add, "Add") or (_is(add, "Sum") and len(add.inputs) == 2)
        if not rw.private(scaled) or not is_add \
                or not _close(rw.scalar(_other(add, erf.outputs[0]) or ""), 1.0):
            continue
        tail = _gelu_tail(rw, x, add.outputs[0])
        if tail is None:
            continue
        nodes, out = tail
        rw.replace([pre, erf, add] + nodes, _fused("Gelu", erf.name, [x], [out]))
        count += 1
    rw.commit()
    return count


# -- attention -------------------------------------------------------------------------------

def _head_split(rw: _Rewrite, name: str, perm: list[int]) -> tuple[list[Node], str, int] | None:
    """``Transpose(perm)(Reshape(t, [., ., H, Dh]))``: (nodes, t, H) or None."""
    tr = rw.producer(name, "Transpose")
    if tr is None or list(tr.attrs.get("perm", [])) != perm or not rw.private(tr.inputs[0]):
        return None
    rs = rw.producer(tr.inputs[0], "Reshape")
    if rs is None or len(rs.inputs) < 2 or rs.attrs.get("allowzero", 0):
        return None
    shape = rw.const(rs.inputs[1])
    if shape is None or shape.size != 4 or min(shape.reshape(-1)[2:]) <= 0 \
            or not _keeps_batch_and_sequence(shape):
        return None
    return [tr, rs], rs.inputs[0], int(shape.reshape(-1)[2])


def _keeps_batch_and_sequence(shape: np.ndarray) -> bool:
    """A Reshape target starting [0, 0], [0, -1] or [-1, 0]: it keeps the [N, S] dims whatever
    they are at run time (a literal there could regroup rows, which the fused op would not)."""
    first = [int(v) for v in shape.reshape(-1)[:2]]
    return all(v in (0, -1) for v in first) and first.count(-1) <= 1


def _key_split(rw: _Rewrite, name: str):
    """K^T per head: Transpose(0,2,3,1) of the split, or (0,1,3,2) of Transpose(0,2,1,3)."""
    found = _head_split(rw, name, [0, 2, 3, 1])
    if found is not None:
        return found
    tr = rw.producer(name, "Transpose")
    if tr is None or list(tr.attrs.get("perm", [])) != [0, 1, 3, 2] or not rw.private(tr.inputs[0]):
        return None
    found = _head_split(rw, tr.inputs[0], [0, 2, 1, 3])
    return None if found is None else ([tr] + found[0], found[1], found[2])


def _head_merge(rw: _Rewrite, ctx: str, hidden_heads: int) -> tuple[list[Node], str] | None:
    """Transpose(0,2,1,3) then Reshape to [., ., D] after the context MatMul."""
    tr = rw.only_reader(ctx)
    if not _is(tr, "Transpose") or list(tr.attrs.get("perm", [])) != [0, 2, 1, 3]:
        return None
    rs = rw.only_reader(tr.outputs[0])
    if not _is(rs, "Reshape") or rs.inputs[0] != tr.outputs[0] or rs.attrs.get("allowzero", 0):
        return None
    shape = rw.const(rs.inputs[1]) if len(rs.inputs) > 1 else None
    if shape is None or shape.size != 3 or int(shape.reshape(-1)[2]) not in (-1, hidden_heads) \
            or not _keeps_batch_and_sequence(shape) or list(shape.reshape(-1)).count(-1) > 1:
        return None
    return [tr, rs], rs.outputs[0]


def _softmax_on_last_axis(rw: _Rewrite, node: Node) -> bool:
    axis = node.attrs.get("axis", -1 if rw.opset(node) >= 13 else 1)
    return axis in (-1, 3)  # on [N, H, S, S] both mean the last axis, at every opset


def fuse_attention(graph: Graph, opsets: dict[str, int]) -> int:
    """Multi-head attention spelled with head-split Reshape/Transpose, MatMul, a scale,
    Softmax, MatMul and the head merge -> ``SelfAttention(Q, K, V)``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for softmax in list(graph.nodes):
        if not _is(softmax, "Softmax") or not _softmax_on_last_axis(rw, softmax):
            continue
        found = _attention(rw, softmax)
        if found is None:
            continue
        nodes, (q, k, v), heads, scale, out = found
        rw.replace(nodes, _fused("SelfAttention", softmax.name, [q, k, v], [out],
                                 num_heads=heads, scale=scale))
        count += 1
    rw.commit()
    return count


def _attention(rw: _Rewrite, softmax: Node):
    scores, scale, nodes = softmax.inputs[0], 1.0, [softmax]
    pre = rw.producers.get(scores)
    if (_is(pre, "Div") or _is(pre, "Mul")) and rw.scalar(pre.inputs[1]) not in (None, 0.0):
        value = rw.scalar(pre.inputs[1])
        scale = 1.0 / value if pre.op_type == "Div" else value
        nodes.append(pre)
        scores = pre.inputs[0]
    qk = rw.producer(scores, "MatMul")
    if qk is None or not rw.private(scores, softmax.inputs[0]):
        return None
    q_split, k_split = _head_split(rw, qk.inputs[0], [0, 2, 1, 3]), _key_split(rw, qk.inputs[1])
    pv = rw.only_reader(softmax.outputs[0])
    if q_split is None or k_split is None or not _is(pv, "MatMul") \
            or pv.inputs[0] != softmax.outputs[0]:
        return None
    v_split = _head_split(rw, pv.inputs[1], [0, 2, 1, 3])
    heads = q_split[2]
    if v_split is None or k_split[2] != heads or v_split[2] != heads:
        return None
    q_shape = rw.const(q_split[0][1].inputs[1]).reshape(-1)
    merge = _head_merge(rw, pv.outputs[0], int(q_shape[2] * q_shape[3]))
    if merge is None:
        return None
    nodes += [qk, pv] + q_split[0] + k_split[0] + v_split[0] + merge[0]
    return nodes, (q_split[1], k_split[1], v_split[1]), heads, scale, merge[1]


# -- MatMul + bias (+ activation) ------------------------------------------------------------

def _activation(rw: _Rewrite, name: str) -> tuple[str, Node] | None:
    node = rw.only_reader(name)
    if node is None or node.inputs[:1] != [name]:
        return None
    if _is(node, "Relu"):
        return "Relu", node
    if node.op_type == "Gelu" and node.domain == FUSED_DOMAIN and len(node.inputs) == 1:
        return "Gelu", node
    if _is(node, "Gelu") and node.attrs.get("approximate", "none") == "none":
        return "Gelu", node
    return None


def fuse_matmul_bias(graph: Graph, opsets: dict[str, int]) -> int:
    """``MatMul(A, W) + b`` (W 2-D, b 1-D, both constant), then optionally Relu or Gelu ->
    ``FusedMatMul(A, W, b; activation)``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for mm in list(graph.nodes):
        if not _is(mm, "MatMul"):
            continue
        w = rw.const(mm.inputs[1])
        add = rw.only_reader(mm.outputs[0])
        if w is None or w.ndim != 2 or w.dtype.kind != "f" or not _is(add, "Add"):
            continue
        bias = _other(add, mm.outputs[0])
        b = rw.const(bias or "")
        if b is None or b.shape != (w.shape[1],) or b.dtype != w.dtype:
            continue
        nodes, out, act = [mm, add], add.outputs[0], ""
        found = _activation(rw, out)
        if found is not None:
            act, node = found
            nodes.append(node)
            out = node.outputs[0]
        rw.replace(nodes, _fused("FusedMatMul", mm.name, [mm.inputs[0], mm.inputs[1], bias],
                                 [out], activation=act))
        count += 1
    rw.commit()
    return count


# -- merged QKV projection -------------------------------------------------------------------

def _projection(rw: _Rewrite, name: str, reader: Node) -> Node | None:
    """The bias-only FusedMatMul producing ``name`` for ``reader`` alone."""
    node = rw.producer(name, "FusedMatMul", FUSED_DOMAIN)
    if node is None or node.attrs.get("activation", "") or len(node.inputs) < 3:
        return None
    readers = rw.consumers.get(name, [])
    if len(readers) != 1 or readers[0] is not reader or name in rw.outputs:
        return None
    return node


def merge_qkv(graph: Graph, opsets: dict[str, int]) -> int:
    """The Q, K and V projections of one input (bias-only ``FusedMatMul``) feeding a
    ``SelfAttention`` -> one ``FusedMatMul`` whose Q columns carry the attention scale, and a
    ``SelfAttention`` of the packed result.  Q alone gets the scale when they cannot merge."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for attn in list(graph.nodes):
        if attn.op_type != "SelfAttention" or attn.domain != FUSED_DOMAIN or len(attn.inputs) != 3:
            continue
        if len(set(attn.inputs)) != 3:
            continue
        proj = [_projection(rw, name, attn) for name in attn.inputs]
        scale = float(attn.attrs.get("scale", 1.0))
        merged = all(p is not None for p in proj) and _merge_projections(rw, attn, proj, scale)
        scaled = not merged and scale != 1.0 and proj[0] is not None \
            and _fold_scale(rw, attn, proj[0], scale)
        count += merged or scaled
    rw.commit()
    return count


def _weights(rw: _Rewrite, proj: Node):
    return rw.const(proj.inputs[1]), rw.const(proj.inputs[2])


def _scaled(value: np.ndarray, scale: float) -> np.ndarray:
    return (value.astype(np.float64) * scale).astype(value.dtype)


def _merge_projections(rw: _Rewrite, attn: Node, proj: list[Node], scale: float) -> bool:
    weights = [_weights(rw, p) for p in proj]
    if len({p.inputs[0] for p in proj}) != 1 or any(v is None for wb in weights for v in wb) \
            or len({(w.shape[0], w.dtype) for w, _ in weights}) != 1:
        return False
    (wq, bq), (wk, bk), (wv, bv) = weights
    w_qkv = np.concatenate([_scaled(wq, scale), wk, wv], axis=1)
    b_qkv = np.concatenate([_scaled(bq, scale), bk, bv])
    packed = f"{attn.name}/qkv"
    merged = _fused("FusedMatMul", packed, [proj[0].inputs[0],
                                            rw.new_const(f"{attn.name}/qkv_w", w_qkv),
                                            rw.new_const(f"{attn.name}/qkv_b", b_qkv)],
                    [packed], activation="")
    rw.replace(proj, merged, anchor=min(proj, key=rw._position))
    rw.replace([attn], dataclasses.replace(attn, inputs=[packed],
                                           attrs={**attn.attrs, "scale": 1.0}))
    return True


def _fold_scale(rw: _Rewrite, attn: Node, proj: Node, scale: float) -> bool:
    w, b = _weights(rw, proj)
    if w is None or b is None:
        return False
    inputs = [proj.inputs[0], rw.new_const(f"{proj.name}/scaled_w", _scaled(w, scale)),
              rw.new_const(f"{proj.name}/scaled_b", _scaled(b, scale))]
    rw.replace([proj], dataclasses.replace(proj, inputs=inputs))
    rw.replace([attn], dataclasses.replace(attn, attrs={**attn.attrs, "scale": 1.0}))
    return True


# -- residual add + LayerNorm ----------------------------------------------------------------

def fuse_skip_layernorm(graph: Graph, opsets: dict[str, int]) -> int:
    """``LayerNormalization(a + b)`` (Y only; a, b computed tensors) -> ``LayerNorm(a, ..., b)``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for ln in list(graph.nodes):
        onnx_ln = _is(ln, "LayerNormalization") and not any(ln.outputs[1:]) \
            and ln.attrs.get("stash_type", 1) == 1
        own_ln = ln.op_type == "LayerNorm" and ln.domain == FUSED_DOMAIN and len(ln.inputs) < 4
        if not (onnx_ln or own_ln):
            continue
        add = rw.producer(ln.inputs[0], "Add")
        if add is None or not rw.private(ln.inputs[0]) \
                or any(rw.const(i) is not None for i in add.inputs):
            continue
        scale, bias = ln.inputs[1], ln.inputs[2] if len(ln.inputs) > 2 else ""
        attrs = {"axis": ln.attrs.get("axis", -1), "epsilon": ln.attrs.get("epsilon", 1e-5)}
        inputs = [add.inputs[0], scale, bias, add.inputs[1]]
        rw.replace([add, ln], _fused("LayerNorm", ln.name, inputs, ln.outputs[:1], **attrs))
        count += 1
    rw.commit()
    return count


# -- per-channel affine (BatchNormalization) and residual add, with their Relu ---------------

def _relu_after(rw: _Rewrite, name: str) -> Node | None:
    node = rw.only_reader(name)
    return node if _is(node, "Relu") else None


def _float32_input(rw: _Rewrite, node: Node, params: list[np.ndarray]) -> bool:
    """The node's input is float32: from its known type, else (before opset 15, where ONNX
    makes them one type) from its float32 parameters."""
    vi = rw.graph.type_of(node.inputs[0])
    if vi is not None and vi.kind == "tensor" and not vi.element_type.is_dynamic():
        try:
            return vi.element_type.to_dtype() == np.float32
        except TypeError:
            return False
    return rw.opset(node) < 15 and all(p.dtype == np.float32 for p in params)


def fuse_batchnorm_activation(graph: Graph, opsets: dict[str, int]) -> int:
    """Inference ``BatchNormalization`` with constant parameters, and a Relu reading it alone ->
    ``ChannelAffine(x, a, c)`` with ``a = scale / sqrt(var + eps)``, ``c = bias - mean * a``
    computed in float32 exactly as the BatchNormalization kernel does."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for bn in list(graph.nodes):
        if not _is(bn, "BatchNormalization") or any(bn.outputs[1:]) or len(bn.inputs) != 5:
            continue
        if bn.attrs.get("training_mode", 0) or bn.attrs.get("spatial", 1) != 1:
            continue
        params = [rw.const(name) for name in bn.inputs[1:]]
        if any(p is None or p.ndim != 1 or p.dtype != np.float32 for p in params) \
                or len({p.shape for p in params}) != 1 or not _float32_input(rw, bn, params):
            continue
        scale, bias, mean, var = params
        a = scale / np.sqrt(var + np.float32(bn.attrs.get("epsilon", 1e-5)))
        c = bias - mean * a
        nodes, out, act = [bn], bn.outputs[0], ""
        relu = _relu_after(rw, out)
        if relu is not None:
            nodes, out, act = [bn, relu], relu.outputs[0], "Relu"
        inputs = [bn.inputs[0], rw.new_const(f"{bn.name}/affine_scale", a),
                  rw.new_const(f"{bn.name}/affine_shift", c)]
        rw.replace(nodes, _fused("ChannelAffine", bn.name, inputs, [out], activation=act))
        count += 1
    rw.commit()
    return count


def fuse_add_activation(graph: Graph, opsets: dict[str, int]) -> int:
    """``Relu(a + b)``, a and b computed tensors -> ``AddActivation(a, b)``."""
    rw = _Rewrite(graph, opsets)
    count = 0
    for add in list(graph.nodes):
        if not _is(add, "Add") or len(add.inputs) != 2 or rw.opset(add) < 7 \
                or any(rw.const(i) is not None for i in add.inputs):
            continue
        relu = _relu_after(rw, add.outputs[0])
        if relu is None:
            continue
        rw.replace([add, relu], _fused("AddActivation", add.name, list(add.inputs),
                                       relu.outputs[:1], activation="Relu"))
        count += 1
    rw.commit()
    return count


_FUSIONS = (fuse_layernorm_chain, fuse_gelu, fuse_attention, fuse_matmul_bias, merge_qkv,
            fuse_skip_layernorm, fuse_batchnorm_activation, fuse_add_activation)


def fuse_all(graph: Graph, opsets: dict[str, int]) -> dict[str, int]:
    """Run every fusion in order; {fusion name: how many it made}."""
    return {f.__name__: f(graph, opsets) for f in _FUSIONS}
