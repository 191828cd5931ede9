"""The GPU plugin.

Without a GPU (this machine): it is not listed and says why; properties validate; the f16
conversion; and the plugin's own logic (device ids, properties from the device, boundary casts,
per-thread streams, export/import) run against ``FakeCupy``, NumPy behind the slice of CuPy's API
the plugin uses.  Tests marked ``gpu`` run the oracle suite and the node tests on a real CUDA
device (f32 at the oracle's 1e-4; f16 at the VPU's fp16 tolerance).
"""

from __future__ import annotations

import threading
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.devices.gpu import (
    GPUPlugin,
    boundary_dtypes,
    cuda_device_count,
    optimal_batch_size,
)
from infermux.devices.plugin import convert_precision
from tests.helpers import make_model, mlp_reference, tiny_mlp

HAS_GPU = cuda_device_count() > 0
gpu = pytest.mark.gpu


class FakeCupy:
    """NumPy behind the part of CuPy's API the GPU plugin calls, with ``count`` fake devices."""

    def __init__(self, count: int = 1):
        self.streams: list = []
        self.downloads = 0
        outer = self

        class Device:
            def __init__(self, index=0):
                self.index = index

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def synchronize(self):
                pass

        class Stream(Device):
            def __init__(self, non_blocking=False):
                outer.streams.append(self)

        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: count,
            getDeviceProperties=lambda i: {"name": b"Fake H100", "major": 9, "minor": 0,
                                           "totalGlobalMem": 80 << 30, "multiProcessorCount": 132,
                                           "integrated": 0},
            memGetInfo=lambda: (70 << 30, 80 << 30))
        self.cuda = types.SimpleNamespace(Device=Device, Stream=Stream, runtime=runtime)
        self.ndarray = np.ndarray

    def asnumpy(self, array, stream=None):
        self.downloads += 1
        return np.array(array)

    def get_default_memory_pool(self):
        return types.SimpleNamespace(free_all_blocks=lambda: None)

    def __getattr__(self, name):
        return getattr(np, name)


def fake_core(count: int = 1) -> tuple[im.Core, FakeCupy]:
    fake = FakeCupy(count)
    core = im.Core()
    core.register_plugin(GPUPlugin(cupy=fake), "GPU")
    return core, fake


# -- without a GPU ---------------------------------------------------------------------------
@pytest.mark.skipif(HAS_GPU, reason="a CUDA GPU is present")
def test_not_listed_without_cupy_or_a_device():
    core = im.Core()
    assert "GPU" not in " ".join(core.available_devices)
    model = core.read_model(tiny_mlp())
    with pytest.raises(im.DeviceNotFoundError, match="no CUDA GPU is available"):
        core.compile_model(model, "GPU")
    with pytest.raises(im.DeviceNotFoundError, match="no CUDA GPU"):
        core.get_property("GPU", "FULL_DEVICE_NAME")


@pytest.mark.parametrize("config, message", [
    ({"INFERENCE_PRECISION_HINT": "bf16"}, "The GPU plugin computes in f32/f16 only"),
    ({"NUM_STREAMS": 0}, "Wrong value 0 for property key NUM_STREAMS"),
    ({"PERFORMANCE_HINT": "FAST"}, "Wrong value FAST for property key PERFORMANCE_HINT"),
    ({"ENABLE_CPU_PINNING": True}, "Unsupported property ENABLE_CPU_PINNING by GPU plugin"),
])
def test_config_is_validated_before_looking_for_a_device(config, message):
    model = im.Core().read_model(tiny_mlp())
    with pytest.raises(im.PropertyError, match=message):
        GPUPlugin().compile_model(model, config)


def test_supported_properties_need_no_device():
    supported = GPUPlugin().get_property("SUPPORTED_PROPERTIES")
    assert supported["INFERENCE_PRECISION_HINT"] == "RW" and supported["OPTIMAL_BATCH_SIZE"] == "RO"


def test_f16_conversion_of_weights_casts_and_attributes():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    weight = numpy_helper.from_array(np.full((1, 1, 1, 1), 0.1, np.float32), "w")
    counts = numpy_helper.from_array(np.array([3], np.int64), "counts")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Resize", ["c", "", "scales"], ["r"], name="resize"),
             helper.make_node("Cast", ["counts"], ["cf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["r", "cf"], ["y"], name="add")]
    proto = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                       [scales, weight, counts])
    graph = im.Core().read_model(proto).graph
    f16 = convert_precision(graph, np.float16)
    assert f16.initializers["w"].dtype == np.float16
    assert f16.initializers["scales"].dtype == np.float32  # sizes stay exact
    assert f16.initializers["counts"].dtype == np.int64
    assert {n.name: n.attrs.get("to") for n in f16.nodes}["cast"] == TensorProto.FLOAT16
    assert f16.type_of("c").element_type == im.Type.f16
    assert f16.inputs[0].element_type == im.Type.f32  # the boundary keeps the model's types
    assert graph.initializers["w"].dtype == np.float32  # the original is untouched
    assert boundary_dtypes(graph.inputs, "f16") == [np.float16]
    assert boundary_dtypes(graph.inputs, "f32") == [None]


def test_optimal_batch_size_heuristic():
    assert [optimal_batch_size(n) for n in (1, 8, 46, 108, 132, 1000)] == [1, 1, 4, 8, 16, 64]


# -- the plugin's logic on FakeCupy ----------------------------------------------------------
@pytest.mark.parametrize("count, listed", [(1, ["CPU", "GPU"]), (2, ["CPU", "GPU.0", "GPU.1"])])
def test_one_device_per_cuda_device(count, listed):
    core, _ = fake_core(count)
    assert core.available_devices == listed
    assert core.get_property("GPU", "AVAILABLE_DEVICES") == [str(i) for i in range(count)]


def test_properties_come_from_the_device():
    core, _ = fake_core(2)
    assert core.get_property("GPU.1", "FULL_DEVICE_NAME") == "Fake H100 (CUDA, CuPy)"
    assert core.get_property("GPU", "DEVICE_ARCHITECTURE") == "sm_90"
    assert core.get_property("GPU", "DEVICE_TYPE") == "DISCRETE"
    assert core.get_property("GPU", "OPTIMAL_BATCH_SIZE") == 16
    assert core.get_property("GPU", "DEVICE_TOTAL_MEM_SIZE") == 80 << 30
    assert core.get_property("GPU.0", "DEVICE_AVAILABLE_MEM_SIZE") == 70 << 30
    with pytest.raises(im.DeviceNotFoundError, match="no device '2'; available: GPU.0, GPU.1"):
        core.get_property("GPU.2", "FULL_DEVICE_NAME")


@pytest.mark.parametrize("precision, rtol", [("f32", 1e-6), ("f16", 3e-3)])
def test_inference_at_either_precision_returns_the_model_types(precision, rtol):
    core, fake = fake_core(2)
    proto = tiny_mlp()
    compiled = core.compile_model(core.read_model(proto), "GPU", {"INFERENCE_PRECISION_HINT": precision})
    assert compiled.get_property("EXECUTION_DEVICES") == ["GPU.0"]  # GPU means GPU.0
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == precision
    plan_weights = [v for v in compiled.device_model.plan._base if isinstance(v, np.ndarray)]
    assert {w.dtype for w in plan_weights} == {np.dtype(np.float16 if precision == "f16" else np.float32)}
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    out = compiled({"x": x})[0]
    assert out.dtype == np.float32 and fake.downloads == 1  # one copy back, at the boundary
    np.testing.assert_allclose(out, mlp_reference(proto, x), rtol=rtol, atol=rtol)


def test_every_supported_compiled_property_can_be_read():
    core, _ = fake_core(1)
    compiled = core.compile_model(core.read_model(tiny_mlp()), "GPU")
    values = {key: compiled.get_property(key) for key in compiled.get_property("SUPPORTED_PROPERTIES")}
    assert values["NUM_STREAMS"] == 1 and values["PERFORMANCE_HINT"] == "LATENCY"
    with pytest.raises(im.PropertyError, match="already compiled"):
        compiled.set_property({"PERF_COUNT": True})


def test_each_thread_gets_its_own_stream():
    core, fake = fake_core(1)
    compiled = core.compile_model(core.read_model(tiny_mlp()), "GPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 2
    x = np.ones((1, 4), np.float32)
    compiled.create_infer_request().infer({"x": x})
    compiled.create_infer_request().infer({"x": x})  # same thread: same stream
    worker = threading.Thread(target=lambda: compiled.create_infer_request().infer({"x": x}))
    worker.start()
    worker.join()
    assert len(fake.streams) == 2


def test_gpu_export_and_import_and_cache(tmp_path):
    core, _ = fake_core(1)
    core.set_property({"CACHE_DIR": str(tmp_path)})
    model = core.read_model(tiny_mlp())
    first = core.compile_model(model, "GPU", {"INFERENCE_PRECISION_HINT": "f16"})
    second = core.compile_model(model, "GPU", {"INFERENCE_PRECISION_HINT": "f16"})
    other = core.compile_model(model, "GPU")  # f32: a different cache entry
    assert [c.get_property("LOADED_FROM_CACHE") for c in (first, second, other)] == [False, True, False]
    assert second.get_property("INFERENCE_PRECISION_HINT") == "f16"
    imported = core.import_model(first.export_model(), "GPU")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(imported(x)[0], other(x)[0])
    assert len(list(tmp_path.glob("*.blob"))) == 2


# -- on a real GPU ---------------------------------------------------------------------------
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")


@gpu
@requires_gpu
@pytest.mark.parametrize("name", ["tiny", "mlp", "lstm", "resnet18", "mobilenetv2", "bert4"])
def test_zoo_on_gpu_matches_onnxruntime(zoo_model, oracle, name):
    proto = zoo_model(name)
    feeds = oracle.random_feeds(proto, seed=1)
    refs = oracle.run_reference(proto, feeds)
    core = im.Core()
    for precision, rtol in (("f32", oracle.RTOL), ("f16", 3e-2)):
        outs = core.compile_model(core.read_model(proto), "GPU",
                                  {"INFERENCE_PRECISION_HINT": precision})(feeds).to_tuple()
        for out, ref in zip(outs, refs):
            assert out.dtype == ref.dtype and out.shape == ref.shape
            assert np.abs(out.astype(np.float64) - ref).max() <= rtol * np.abs(ref).max() + oracle.ATOL


@gpu
@requires_gpu
def test_light_models_on_gpu_match_onnxruntime(oracle):
    from infermux.conformance.data import light_models_dir
    from tests.helpers import with_random_weights

    core = im.Core()
    for path in sorted(light_models_dir().glob("light_*.onnx")):
        proto = with_random_weights(onnx.load(str(path)))
        feeds = oracle.random_feeds(proto, seed=1)
        refs = oracle.run_reference(proto, feeds)
        outs = core.compile_model(core.read_model(proto), "GPU")(feeds).to_tuple()
        for out, ref in zip(outs, refs):
            assert np.abs(out.astype(np.float64) - ref).max() <= oracle.RTOL * np.abs(ref).max() + oracle.ATOL, path.stem


@gpu
@requires_gpu
def test_node_tests_on_gpu(node_test_root):
    from infermux.conformance.runner import PASSED, iter_test_dirs, run_node_tests

    cpu = {r.name: r.status for r in run_node_tests(iter_test_dirs(node_test_root), device="CPU")}
    gpu_results = {r.name: r for r in run_node_tests(iter_test_dirs(node_test_root), device="GPU")}
    regressions = {n: r.reason for n, r in gpu_results.items() if cpu[n] == PASSED and r.status != PASSED}
    passed = sum(r.status == PASSED for r in gpu_results.values())
    print(f"GPU node tests: {passed} passed of {len(gpu_results)}; {len(regressions)} pass on CPU only")
    assert not regressions, regressions
