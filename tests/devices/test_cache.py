"""Model caching: the blob format, export/import, CACHE_DIR, keys, and corrupt cache files."""

from __future__ import annotations

import io
import logging
import statistics
import struct
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.devices.cache import (
    HEADER_SIZE,
    BlobError,
    ModelCache,
    cache_key,
    file_digest,
    model_digest,
    read_blob,
    write_blob,
)
from infermux.devices.plugin import optimize_model
from tests.helpers import make_model, mlp_reference, tiny_mlp


@pytest.fixture
def core():
    return im.Core()


def conv_bn_model() -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Relu, LayerNormalization (a function op): the passes have
    something to fold and expand; one weight is constant (stored as a splat)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.full(4, 0.5, np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "var"),
             numpy_helper.from_array(np.full(100, 2.0, np.float32), "flat_scale")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
             helper.make_node("LayerNormalization", ["f", "flat_scale"], ["y"], name="ln", axis=-1)]
    inits.append(numpy_helper.from_array(np.array([1, 100], np.int64), "shape"))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])], inits)


def _reference(proto, x):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(proto).run(None, {"x": x})[0]


# -- the blob --------------------------------------------------------------------------------
def test_blob_round_trip_keeps_the_optimised_graph(core):
    optimized = optimize_model(core.read_model(conv_bn_model()))
    assert optimized.graph.nodes[0].op_type == "Conv"  # BN folded
    blob = write_blob(optimized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert bytes(blob[:8]) == b"INFERMUX"
    back = read_blob(blob, plugin="CPU")
    assert back.plugin == "CPU" and back.properties == {"INFERENCE_PRECISION_HINT": "f32"}
    assert [(n.name, n.op_type) for n in back.model.graph.nodes] == \
        [(n.name, n.op_type) for n in optimized.graph.nodes]
    assert [n.rt_info.get("opset") for n in back.model.graph.nodes] == \
        [n.rt_info.get("opset") for n in optimized.graph.nodes]
    for name, arr in optimized.graph.initializers.items():
        np.testing.assert_array_equal(back.model.graph.initializers[name], arr)
        assert back.model.graph.initializers[name].dtype == arr.dtype
    splats = [w for w in back.meta["weights"] if "splat" in w]
    assert [w["name"] for w in splats] == ["flat_scale"]  # stored as one value, not 100


def test_blob_holds_no_pickle():
    from infermux.devices import cache

    with open(cache.__file__) as f:
        source = f.read()
    assert "pickle" not in source.replace("no pickle", "").replace("NO pickle", "")


def test_blob_of_another_device_is_refused(core):
    blob = write_blob(optimize_model(core.read_model(tiny_mlp())), "GPU")
    with pytest.raises(BlobError, match="exported from the GPU device; import it on GPU, not CPU"):
        core.import_model(io.BytesIO(blob), "CPU")


def _corruptions(blob: bytes):
    """(what, damaged bytes): truncations and flipped bytes in each section."""
    meta_len, graph_len, weights_offset = struct.unpack_from("<QQQ", blob, 16)
    yield "truncated to the header", blob[:HEADER_SIZE]
    yield "truncated by one byte", blob[:-1]
    yield "empty", b""
    yield "extra byte", blob + b"\0"
    for what, at in [("magic", 0), ("version", 8), ("lengths", 20), ("checksum", 49),
                     ("reserved", 53), ("metadata", HEADER_SIZE + meta_len // 2),
                     ("graph", HEADER_SIZE + meta_len + graph_len // 2),
                     ("weights", weights_offset + 7), ("last byte", len(blob) - 1)]:
        damaged = bytearray(blob)
        damaged[at] ^= 0x5A
        yield f"flipped {what}", bytes(damaged)


def test_every_corruption_is_detected(core):
    blob = bytes(write_blob(optimize_model(core.read_model(conv_bn_model())), "CPU"))
    for what, damaged in _corruptions(blob):
        with pytest.raises(BlobError):
            read_blob(damaged)
        with pytest.raises(BlobError):  # and through the public API, as the same error
            core.import_model(damaged, "CPU")


# -- export / import -------------------------------------------------------------------------
def test_export_is_bytesio_and_import_runs_without_the_passes(core, monkeypatch):
    proto = conv_bn_model()
    compiled = core.compile_model(core.read_model(proto), "CPU")
    blob = compiled.export_model()
    assert isinstance(blob, io.BytesIO)
    import infermux.devices.cpu as cpu_module

    monkeypatch.setattr(cpu_module, "optimize_model", lambda m: pytest.fail("passes ran"))
    imported = core.import_model(blob, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(imported(x)[0], compiled(x)[0])
    np.testing.assert_allclose(imported(x)[0], _reference(proto, x), rtol=1e-4, atol=1e-5)
    assert imported.get_property("LOADED_FROM_CACHE") is True
    assert imported.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    assert imported.get_property("NETWORK_NAME") == compiled.get_property("NETWORK_NAME")
    assert core.import_model(blob.getvalue(), "CPU")(x)[0].shape == (1, 100)


def test_import_on_the_vpu(core):
    from infermux.devices.vpu import VPUPlugin

    core.register_plugin(VPUPlugin(emulate=True), "VPU")
    proto = tiny_mlp()
    compiled = core.compile_model(core.read_model(proto), "VPU")
    imported = core.import_model(compiled.export_model(), "VPU")
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(imported(x)[0], compiled(x)[0])
    assert imported.get_property("LOADED_FROM_CACHE") is True


# -- CACHE_DIR -------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["core", "device", "compile"])
def test_second_compile_loads_from_cache(core, tmp_path, scope):
    proto = tiny_mlp()
    model = core.read_model(proto)
    config = {}
    if scope == "core":
        core.set_property({"CACHE_DIR": str(tmp_path)})
    elif scope == "device":
        core.set_property("CPU", {"CACHE_DIR": str(tmp_path)})
    else:
        config = {"CACHE_DIR": str(tmp_path)}
    first = core.compile_model(model, "CPU", config)
    second = core.compile_model(model, "CPU", config)
    assert first.get_property("LOADED_FROM_CACHE") is False
    assert second.get_property("LOADED_FROM_CACHE") is True
    assert len(list(tmp_path.glob("*.blob"))) == 1
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(second(x)[0], mlp_reference(proto, x), rtol=1e-6)


def test_path_and_model_compiles_have_separate_entries(core, tmp_path, monkeypatch):
    path = tmp_path / "mlp.onnx"
    onnx.save(tiny_mlp(), path)
    core.set_property({"CACHE_DIR": str(tmp_path / "cache")})
    assert core.compile_model(str(path), "CPU").get_property("LOADED_FROM_CACHE") is False
    assert core.compile_model(core.read_model(str(path)), "CPU").get_property("LOADED_FROM_CACHE") is False
    monkeypatch.setattr(core, "read_model", lambda *a: pytest.fail("a cache hit from a path reads no model"))
    compiled = core.compile_model(str(path), "CPU")
    assert compiled.get_property("LOADED_FROM_CACHE") is True
    assert compiled.outputs[0].any_name == "y"
    assert len(list((tmp_path / "cache").glob("*.blob"))) == 2


def test_key_covers_content_device_properties_and_version():
    model = im.Core().read_model(tiny_mlp())
    digest = model_digest(model)
    assert digest == model_digest(im.Core().read_model(tiny_mlp()))
    changed = im.Core().read_model(tiny_mlp())
    changed.graph.initializers["W"] = changed.graph.initializers["W"] + 1
    assert model_digest(changed) != digest
    keys = {cache_key(digest, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}),
            cache_key(digest, "VPU", {"INFERENCE_PRECISION_HINT": "f32"}),
            cache_key(digest, "GPU", {"INFERENCE_PRECISION_HINT": "f16"}),
            cache_key(digest, "GPU", {"INFERENCE_PRECISION_HINT": "f32"})}
    assert len(keys) == 4


def test_file_digest_follows_external_data(tmp_path):
    from onnx.external_data_helper import convert_model_to_external_data

    proto = tiny_mlp()
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="w.bin",
                                   size_threshold=0)
    onnx.save(proto, tmp_path / "m.onnx")
    before = file_digest(tmp_path / "m.onnx")
    data = bytearray((tmp_path / "w.bin").read_bytes())
    data[0] ^= 1
    (tmp_path / "w.bin").write_bytes(bytes(data))
    assert file_digest(tmp_path / "m.onnx") != before


def test_file_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    from infermux.devices import cache

    path = tmp_path / "m.onnx"
    path.write_bytes(b"model one")
    assert file_digest(path) == file_digest(path)
    assert path.resolve() not in cache._DIGESTS  # just written: too recent to trust its stat
    monkeypatch.setattr(cache, "_RACY_S", 0.0)
    first = file_digest(path)
    real_read = cache._read_file
    monkeypatch.setattr(cache, "_read_file", lambda *a: pytest.fail("an unchanged file is re-read"))
    assert file_digest(path) == first
    monkeypatch.setattr(cache, "_read_file", real_read)
    time.sleep(0.05)  # past the file system's timestamp tick
    path.write_bytes(b"model two")  # same size, new content: its ctime moves
    assert file_digest(path) != first


@pytest.mark.parametrize("damage", ["truncate", "flip-graph", "flip-weights", "garbage"])
def test_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(core, tmp_path, caplog, damage):
    proto = conv_bn_model()
    model = core.read_model(proto)
    core.set_property({"CACHE_DIR": str(tmp_path)})
    core.compile_model(model, "CPU")
    (path,) = tmp_path.glob("*.blob")
    good = path.read_bytes()
    meta_len, _, weights_offset = struct.unpack_from("<QQQ", good, 16)
    bad = bytearray(good)
    if damage == "truncate":
        bad = bad[:len(bad) // 2]
    elif damage == "flip-graph":
        bad[HEADER_SIZE + meta_len + 10] ^= 0xFF
    elif damage == "flip-weights":
        bad[weights_offset + 3] ^= 0x01  # one bit of one weight: a wrong result if undetected
    else:
        bad = bytearray(b"not a blob at all")
    path.write_bytes(bytes(bad))
    with caplog.at_level(logging.WARNING, logger="infermux.devices.cache"):
        compiled = core.compile_model(model, "CPU")
    assert compiled.get_property("LOADED_FROM_CACHE") is False
    assert any("ignoring the cache file" in r.message for r in caplog.records)
    assert path.read_bytes() == good  # rewritten
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(compiled(x)[0], _reference(proto, x), rtol=1e-4, atol=1e-5)
    assert core.compile_model(model, "CPU").get_property("LOADED_FROM_CACHE") is True


def test_unwritable_cache_dir_still_compiles(core, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="infermux.devices.cache"):
        compiled = core.compile_model(core.read_model(tiny_mlp()), "CPU", {"CACHE_DIR": str(blocker / "c")})
    assert compiled.get_property("LOADED_FROM_CACHE") is False
    assert any("cannot write the cache file" in r.message for r in caplog.records)


def test_model_cache_writes_atomically(tmp_path):
    cache = ModelCache(tmp_path / "c")
    cache.store("k", b"abc")
    assert cache.load("k") == bytearray(b"abc") and cache.load("missing") is None
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["k.blob"]


@pytest.mark.slow
def test_cached_compile_of_light_resnet50_is_faster(tmp_path):
    """The second compile of light ResNet-50 (from its path) imports the blob: measured as the
    median of 3 compiles each way, it must be faster (the ratio is a benchmark figure, reported
    in the closing notes; the CPU's fusions and kernel warm-up run on both paths)."""
    from infermux.conformance.data import light_models_dir

    path = str(light_models_dir() / "light_resnet50.onnx")
    plain, cached = im.Core(), im.Core()
    cached.set_property({"CACHE_DIR": str(tmp_path)})
    plain.compile_model(path, "CPU")  # warm-up: kernel imports
    cached.compile_model(path, "CPU")  # fills the cache

    def median_s(core) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            compiled = core.compile_model(path, "CPU")
            times.append(time.perf_counter() - start)
        return statistics.median(times), compiled

    plain_s, _ = median_s(plain)
    cached_s, compiled = median_s(cached)
    assert compiled.get_property("LOADED_FROM_CACHE") is True
    assert cached_s < plain_s, f"cached {cached_s:.3f} s vs {plain_s:.3f} s"


@pytest.mark.parametrize("enable_mmap", [True, False])
def test_a_model_loaded_from_cache_survives_its_file_being_truncated(core, tmp_path, enable_mmap):
    import mmap

    rng = np.random.default_rng(5)
    weight = numpy_helper.from_array(rng.standard_normal((256, 256)).astype(np.float32), "w")
    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 256])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 256])], [weight])
    model = core.read_model(proto)
    config = {"CACHE_DIR": str(tmp_path), "ENABLE_MMAP": enable_mmap}
    core.compile_model(model, "CPU", config)
    (path,) = tmp_path.glob("*.blob")
    key = path.stem
    assert isinstance(ModelCache(tmp_path, use_mmap=enable_mmap).load(key), mmap.mmap) == enable_mmap
    loaded = core.compile_model(model, "CPU", config)
    assert loaded.get_property("LOADED_FROM_CACHE") is True
    with open(path, "r+b") as f:
        f.truncate(100)  # in place, under the loaded model
    x = rng.standard_normal((2, 256)).astype(np.float32)
    np.testing.assert_allclose(loaded(x)[0], x @ numpy_helper.to_array(weight), rtol=1e-4, atol=1e-4)
