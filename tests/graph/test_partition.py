"""The HETERO partitioner: affinity, cycle-free grouping, cutting, memory and balanced splits."""

import networkx as nx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.errors import InfermuxError, UnsupportedOpError
from infermux.graph import partition as P
from infermux.graph.stateful import make_stateful
from tests.helpers import make_model


def _vi(name, shape=(2, 3)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs=("x",), outputs=("y",), inits=(), shape=(2, 3)):
    proto = make_model(nodes, [_vi(i, shape) for i in inputs], [_vi(o, shape) for o in outputs], inits)
    return im.Core().read_model(proto)


def _aba():
    """x -> r1 (Relu) -> s1 (Sigmoid, only B) -> r2 (Relu) -> add(c, a) -> y."""
    return _model([helper.make_node("Relu", ["x"], ["a"], name="r1"),
                   helper.make_node("Sigmoid", ["a"], ["b"], name="s1"),
                   helper.make_node("Relu", ["b"], ["c"], name="r2"),
                   helper.make_node("Add", ["c", "a"], ["y"], name="add")])


def _names(model, *ops):
    return {n.name for n in model.get_ops() if not ops or n.op_type in ops}


def test_greedy_claims_in_priority_order_and_cuts_a_b_a():
    m = _aba()
    aff = P.greedy_affinity(m, [("A", _names(m, "Relu", "Add")), ("B", _names(m))])
    assert aff == {"r1": "A", "s1": "B", "r2": "A", "add": "A"}
    plan = P.partition(m, aff)
    assert plan.devices == ("A", "B", "A")
    assert [s.nodes for s in plan.stages] == [("r1",), ("s1",), ("r2", "add")]
    last = plan.stages[2]
    assert last.input_names == ("b", "a")                 # crossing tensors by first use
    assert [(f.stage, f.index) for f in last.feeds] == [(1, 0), (0, 0)]
    assert plan.stages[0].output_names == ("a",)          # read by stages 1 and 2, sent once
    assert [(o.stage, o.tensor) for o in plan.outputs] == [(2, "y")]
    assert [s.model.friendly_name for s in plan.stages] == ["m_0", "m_1", "m_2"]
    assert all(s.model.opsets == m.opsets for s in plan.stages)


def test_nodes_no_device_supports_are_named():
    m = _aba()
    with pytest.raises(UnsupportedOpError, match=r"'s1' \(Sigmoid\).*supported by none of the devices A, B"):
        P.greedy_affinity(m, [("A", _names(m, "Relu", "Add")), ("B", _names(m, "Relu", "Add"))])


def test_manual_affinity_respected_and_partial_affinity_rejected():
    m = _aba()
    for node, dev in zip(m.get_ops(), ["B", "B", "A", "A"]):
        node.get_rt_info()["affinity"] = dev
    aff = P.manual_affinity(m)
    assert aff == {"r1": "B", "s1": "B", "r2": "A", "add": "A"}
    assert P.partition(m, aff).devices == ("B", "A")
    del m.get_ops()[2].get_rt_info()["affinity"]
    with pytest.raises(InfermuxError, match=r"Nodes 'r2' \(Relu\) were not assigned to any device. It might "
                                            r"happen if you assigned layers manually and missed some layers"):
        P.manual_affinity(m)
    assert P.manual_affinity(_aba()) is None


def test_diamond_is_never_merged_into_a_cycle():
    # a (A) -> b (B) -> d (A);  a -> c (A) -> d.  Naively {a, c, d} + {b} is a 2-cycle.
    m = _model([helper.make_node("Relu", ["x"], ["a"], name="a"),
                helper.make_node("Sigmoid", ["a"], ["b"], name="b"),
                helper.make_node("Relu", ["a"], ["c"], name="c"),
                helper.make_node("Add", ["b", "c"], ["y"], name="d")])
    aff = {"a": "A", "b": "B", "c": "A", "d": "A"}
    naive = nx.quotient_graph(nx.DiGraph(m.to_networkx()), [{"a", "c", "d"}, {"b"}])
    assert not nx.is_directed_acyclic_graph(naive)  # the trap is real
    groups = P.group_nodes(m, aff)
    assert [(g.device, g.nodes) for g in groups] == [("A", ("a", "c")), ("B", ("b",)), ("A", ("d",))]
    plan = P.cut_model(m, groups)
    assert all(f.stage < s for s, st in enumerate(plan.stages) for f in st.feeds)


def test_independent_same_device_regions_merge():
    m = _model([helper.make_node("Relu", ["x"], ["a"], name="a"),
                helper.make_node("Sigmoid", ["x2"], ["b"], name="b"),
                helper.make_node("Relu", ["b"], ["c"], name="c"),
                helper.make_node("Add", ["a", "c"], ["y"], name="d")], inputs=("x", "x2"))
    groups = P.group_nodes(m, {"a": "A", "b": "B", "c": "A", "d": "A"})
    assert [(g.device, g.nodes) for g in groups] == [("B", ("b",)), ("A", ("a", "c", "d"))]


def _light(name):
    from infermux.conformance.data import light_models_dir

    return im.Core().read_model(str(light_models_dir() / f"{name}.onnx"))


def test_deterministic_and_acyclic_on_a_real_model():
    m = _light("light_inception_v1")
    supported = [("A", _names(m, "Conv", "Concat")), ("B", _names(m))]
    plans = [P.partition(m, P.greedy_affinity(m, supported)) for _ in range(2)]
    assert plans[0].signature() == plans[1].signature()
    plan = plans[0]
    assert len(plan.stages) > 10
    assert all(f.stage < s for s, st in enumerate(plan.stages) for f in st.feeds)
    assert sorted(n for s in plan.stages for n in s.nodes) == sorted(_names(m))
    for stage in plan.stages:  # each sub-model carries exactly the weights it reads
        reads = {t for n in stage.model.graph.nodes for t in n.inputs}
        assert set(stage.model.graph.initializers) <= reads


def test_constants_follow_consumers_and_weights_go_where_read():
    w = numpy_helper.from_array(np.full((2, 3), 2.0, np.float32), "w")
    m = _model([helper.make_node("Constant", [], ["k"], name="k",
                                 value=numpy_helper.from_array(np.ones((2, 3), np.float32))),
                helper.make_node("Add", ["x", "k"], ["a"], name="a"),
                helper.make_node("Sigmoid", ["a"], ["b"], name="b"),
                helper.make_node("Mul", ["b", "k"], ["c"], name="c"),
                helper.make_node("Mul", ["c", "w"], ["y"], name="d")], inits=[w])
    aff = P.greedy_affinity(m, [("A", _names(m, "Add", "Mul")), ("B", _names(m, "Sigmoid"))])
    assert aff["k"] == "A"  # no device claims Constant: it follows its first consumer
    plan = P.partition(m, aff)
    assert plan.devices == ("A", "B", "A")
    first, _, last = plan.stages
    assert "k" in first.model.graph.initializers and "k" in last.model.graph.initializers
    assert set(first.model.graph.initializers) == {"k"} and set(last.model.graph.initializers) == {"k", "w"}
    assert "k" not in first.output_names  # copied, never sent


def test_subgraph_outer_reads_become_stage_inputs():
    then_g = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [], [_vi("t")])
    else_g = helper.make_graph([helper.make_node("Neg", ["a"], ["e"])], "else", [], [_vi("e")])
    cond = numpy_helper.from_array(np.array(True), "cond")
    m = _model([helper.make_node("Relu", ["x"], ["a"], name="r"),
                helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)],
               inits=[cond])
    plan = P.partition(m, {"r": "A", "if": "B"})
    assert plan.stages[1].input_names == ("a",)    # read only inside the branches
    assert set(plan.stages[1].model.graph.initializers) == {"cond"}


def test_passthrough_and_weight_outputs_are_routed():
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], outputs=("y", "x", "w"), inits=[w])
    plan = P.partition(m, {"r": "A"})
    assert [(o.stage, o.index) for o in plan.outputs] == [(0, 0), (P.MODEL_INPUT, 0), (P.CONSTANT, 0)]
    np.testing.assert_array_equal(plan.constants[0], np.ones((2, 3), np.float32))


def _stateful():
    """Variable v: ReadValue -> Add(x) -> Sigmoid -> Assign; Sigmoid only on B."""
    m = _model([helper.make_node("Add", ["h_in", "x"], ["s"], name="add"),
                helper.make_node("Sigmoid", ["s"], ["h_out"], name="sig"),
                helper.make_node("Relu", ["s"], ["y"], name="relu")],
               inputs=("x", "h_in"), outputs=("y", "h_out"))
    return make_stateful(m, {"h_in": "h_out"})


def test_a_variable_read_and_write_share_one_partition():
    m = _stateful()
    groups = P.forced_groups(m)
    assert groups == [frozenset({"h_inh_out/ReadValue", "add", "sig", "h_inh_out/Assign"})]
    everything = _names(m)
    aff = P.greedy_affinity(m, [("A", everything - {"sig"}), ("B", everything)])
    assert {aff[n] for n in groups[0]} == {"B"}  # A cannot run sig, so the whole loop moves
    assert aff["relu"] == "A"
    plan = P.partition(m, aff)
    assert plan.devices == ("B", "A")
    with pytest.raises(InfermuxError, match="share a variable"):
        P.group_nodes(m, {**aff, "sig": "A"})


def test_memory_rule_whole_model_or_ratio_split():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 3)).astype(np.float32), f"w{i}") for i in range(4)]
    nodes, prev = [], "x"
    for i in range(4):
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        prev = f"h{i}"
    nodes.append(helper.make_node("Relu", [prev], ["y"], name="out"))
    m = _model(nodes, inits=inits)
    total = sum(P.node_weight_bytes(m).values())
    assert total == 4 * 36
    aff = P.memory_affinity(m, [("A", int(1.2 * total) - 1), ("B", int(1.2 * total) + 1)])
    assert set(aff.values()) == {"B"}                          # first device with >= 1.2x takes all
    assert set(P.memory_affinity(m, [("A", None), ("B", 10**9)]).values()) == {"A"}  # no info: unlimited
    aff = P.memory_affinity(m, [("A", int(1.2 * 72) + 1), ("B", int(1.2 * 72) + 1)])
    assert [aff[f"mm{i}"] for i in range(4)] == ["A", "A", "B", "B"]  # each holds half the weights
    assert aff["out"] == "B"


def _chain(n=10):
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Relu", [prev], [out], name=f"n{i}"))
        prev = out
    return _model(nodes)


def test_balanced_splits_equal_costs_evenly():
    m = _chain(10)
    costs = {d: {f"n{i}": 1e-3 for i in range(10)} for d in ("A", "B")}
    aff = P.balanced_affinity(m, ["A", "B"], costs)
    assert [aff[f"n{i}"] for i in range(10)] == ["A"] * 5 + ["B"] * 5
    aff = P.balanced_affinity(m, ["A", "B"], {"A": costs["A"], "B": {k: 3e-3 for k in costs["B"]}})
    assert sum(v == "B" for v in aff.values()) == 2  # 3x slower: 8 x 1 ms on A vs 2 x 3 ms on B


def test_balanced_prefers_the_cut_moving_fewer_bytes_within_slack():
    m = _chain(10)
    costs = {d: {f"n{i}": 1e-3 for i in range(10)} for d in ("A", "B")}
    sizes = {f"t{i}": 1000 for i in range(9)} | {"t5": 10}   # cutting before n6 moves 10 bytes
    aff = P.balanced_affinity(m, ["A", "B"], costs, sizes=sizes, transfer_s_per_byte=0.0, slack=0.25)
    assert [aff[f"n{i}"] for i in range(10)] == ["A"] * 6 + ["B"] * 4
    aff = P.balanced_affinity(m, ["A", "B"], costs, sizes=sizes, transfer_s_per_byte=0.0, slack=0.0)
    assert [aff[f"n{i}"] for i in range(10)] == ["A"] * 5 + ["B"] * 5
    even = {f"t{i}": 1000 for i in range(9)}  # no cut saves bytes: the slack buys nothing
    aff = P.balanced_affinity(m, ["A", "B"], costs, sizes=even, transfer_s_per_byte=0.0, slack=0.5)
    assert [aff[f"n{i}"] for i in range(10)] == ["A"] * 5 + ["B"] * 5


def test_balanced_respects_support_and_memory():
    m = _chain(10)
    costs = {d: {f"n{i}": 1e-3 for i in range(10)} for d in ("A", "B")}
    everything = _names(m)
    aff = P.balanced_affinity(m, ["A", "B"], costs, supported=[("A", everything - {"n2"}), ("B", everything)])
    assert [aff[f"n{i}"] for i in range(10)] == ["A"] * 2 + ["B"] * 8
    with pytest.raises(UnsupportedOpError, match="no split"):
        P.balanced_affinity(m, ["A", "B"], costs, supported=[("A", {"n0"}), ("B", {"n0"})])


def test_dot_text_names_devices_and_partitions():
    m = _aba()
    aff = P.greedy_affinity(m, [("A", _names(m, "Relu", "Add")), ("B", _names(m))])
    colored = P.affinity_dot(m, aff)
    assert colored.startswith('digraph "hetero_affinity_m"') and '"s1" [label="s1\\nSigmoid\\nB"' in colored
    parts = P.plan_dot(P.partition(m, aff), "m")
    assert parts.count("subgraph \"cluster_") == 3
    assert '"1/s1" -> "2/r2" [label="b", style=bold, color=red]' in parts
