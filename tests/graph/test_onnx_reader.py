import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.graph.onnx_writer import to_onnx
from tests.helpers import tiny_mlp


def _external_model(tmp_path, location: str) -> str:
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", location
    w.ClearField("raw_data")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_reads_path_bytes_and_proto(tmp_path):
    proto = tiny_mlp()
    path = tmp_path / "mlp.onnx"
    onnx.save(proto, path)
    core = im.Core()
    for source in (str(path), path.read_bytes(), proto):
        model = core.read_model(source)
        assert [i.any_name for i in model.inputs] == ["x"]
        assert str(model.input(0).partial_shape) == "[?,4]"
        assert str(model.output("y").partial_shape) == "[?,3]"


def test_external_data_inside_the_folder_is_read(tmp_path):
    (tmp_path / "w.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    model = im.Core().read_model(_external_model(tmp_path, "w.bin"))
    np.testing.assert_array_equal(model.graph.initializers["W"], np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    with pytest.raises(im.ModelReadError, match="inside the model's folder|refused"):
        im.Core().read_model(_external_model(tmp_path, location))


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(np.zeros(6, np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(outside, model_dir / "w.bin")
    with pytest.raises(im.ModelReadError, match="outside"):
        im.Core().read_model(_external_model(model_dir, "w.bin"))


def test_external_data_length_past_end_is_refused(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    with pytest.raises(im.ModelReadError, match="has 8 bytes"):
        im.Core().read_model(_external_model(tmp_path, "w.bin"))


def test_malformed_files_get_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(im.ModelReadError, match="bad.onnx"):
        im.Core().read_model(str(bad))
    with pytest.raises(im.ModelReadError, match="no such file"):
        im.Core().read_model(str(tmp_path / "missing.onnx"))


def test_writer_round_trips_a_model(tmp_path):
    model = im.Core().read_model(tiny_mlp())
    proto = to_onnx(model)
    onnx.checker.check_model(proto)
    again = im.Core().read_model(proto)
    assert [n.op_type for n in again.get_ops()] == ["MatMul", "Add", "Relu"]
    np.testing.assert_array_equal(again.graph.initializers["W"], model.graph.initializers["W"])


def test_networkx_view_and_rt_info():
    model = im.Core().read_model(tiny_mlp())
    g = model.to_networkx()
    assert list(g.edges()) == [("mm", "add"), ("add", "relu")]
    op = model.get_ops()[0]
    op.get_rt_info()["affinity"] = "CPU"
    assert model.get_ops()[0].rt_info["affinity"] == "CPU"
