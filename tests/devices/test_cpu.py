"""CPU plugin properties, hints and profiling."""

import numpy as np
import pytest

import infermux as im
from infermux.devices.cpu import cpu_count
from tests.helpers import tiny_mlp


@pytest.fixture
def model():
    return im.Core().read_model(tiny_mlp())


def test_device_metrics():
    core = im.Core()
    assert core.get_property("CPU", "FULL_DEVICE_NAME")
    assert core.get_property("CPU", "DEVICE_TYPE") == "INTEGRATED"
    assert "FP32" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert core.get_property("CPU", "RANGE_FOR_STREAMS") == (1, cpu_count())
    supported = core.get_property("CPU", "SUPPORTED_PROPERTIES")
    assert supported["PERFORMANCE_HINT"] == "RW" and supported["FULL_DEVICE_NAME"] == "RO"
    with pytest.raises(im.PropertyError, match="OPTIMAL_BATCH_SIZE"):
        core.get_property("CPU", "OPTIMAL_BATCH_SIZE")


@pytest.mark.parametrize("config, streams, hint", [
    ({}, 1, "LATENCY"),
    ({"PERFORMANCE_HINT": "THROUGHPUT"}, cpu_count(), "THROUGHPUT"),
    ({"PERFORMANCE_HINT": im.properties.hint.PerformanceMode.THROUGHPUT}, cpu_count(), "THROUGHPUT"),
    ({"PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": 1}, 1, "THROUGHPUT"),
    ({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 1}, 1, "THROUGHPUT"),
    ({"NUM_STREAMS": 2}, 2, "LATENCY"),
    ({"NUM_STREAMS": "AUTO"}, cpu_count(), "THROUGHPUT"),
])
def test_hints_translate_to_streams(model, config, streams, hint):
    compiled = im.Core().compile_model(model, "CPU", config)
    assert compiled.get_property("NUM_STREAMS") == streams
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == streams
    assert compiled.get_property("PERFORMANCE_HINT") == hint


@pytest.mark.parametrize("config, message", [
    ({"FOO_BAR": 1}, "Unsupported property FOO_BAR by CPU plugin"),
    ({"PERFORMANCE_HINT": "FAST"}, ("Wrong value FAST for property key PERFORMANCE_HINT. Expected only "
                                    "LATENCY/THROUGHPUT/CUMULATIVE_THROUGHPUT")),
    ({"NUM_STREAMS": -5}, "Wrong value -5 for property key NUM_STREAMS"),
    ({"FULL_DEVICE_NAME": "x"}, "read-only"),
    ({"INFERENCE_PRECISION_HINT": "bf16"}, "f32 only"),
])
def test_bad_properties_are_rejected(model, config, message):
    with pytest.raises(im.PropertyError, match=message):
        im.Core().compile_model(model, "CPU", config)


def test_core_set_property_becomes_the_default(model):
    core = im.Core()
    core.set_property("CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert core.compile_model(model, "CPU").get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    with pytest.raises(im.PropertyError, match="without a device list"):
        core.set_property("HETERO:CPU", {"PERF_COUNT": True})


def test_perf_count_gives_profiling_info(model):
    compiled = im.Core().compile_model(model, "CPU", {"PERF_COUNT": True})
    req = compiled.create_infer_request()
    req.infer({"x": np.ones((1, 4), np.float32)})
    info = req.profiling_info
    # MatMul + Add + Relu run as one fused step, reported under the first node's name
    assert [(p.node_name, p.node_type) for p in info] == [("mm", "FusedMatMul")]
    assert all(p.real_time.total_seconds() >= 0 for p in info)
    assert info[0].status == "EXECUTED"


def test_every_supported_compiled_property_can_be_read(model):
    compiled = im.Core().compile_model(model, "CPU")
    values = {key: compiled.get_property(key) for key in compiled.get_property("SUPPORTED_PROPERTIES")}
    assert values["LOADED_FROM_CACHE"] is False and values["EXECUTION_DEVICES"] == ["CPU"]


def test_compiled_model_is_immutable(model):
    compiled = im.Core().compile_model(model, "CPU")
    with pytest.raises(im.PropertyError, match="already compiled"):
        compiled.set_property({"PERF_COUNT": True})


def test_memory_metrics_and_caching_capability():
    core = im.Core()
    total = core.get_property("CPU", "DEVICE_TOTAL_MEM_SIZE")
    available = core.get_property("CPU", "DEVICE_AVAILABLE_MEM_SIZE")
    assert 0 < available <= total
    assert "EXPORT_IMPORT" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert core.get_property("CPU", "AVAILABLE_DEVICES") == [""]
    assert core.get_property("CPU", "CACHING_PROPERTIES") == ["INFERENCE_PRECISION_HINT"]


def test_export_import_keeps_results_and_takes_new_hints(model):
    core = im.Core()
    compiled = core.compile_model(model, "CPU", {"PERF_COUNT": True})
    assert compiled.get_property("LOADED_FROM_CACHE") is False
    assert compiled.get_property("SUPPORTED_PROPERTIES")["LOADED_FROM_CACHE"] == "RO"
    imported = core.import_model(compiled.export_model(), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert imported.get_property("LOADED_FROM_CACHE") is True
    assert imported.get_property("NUM_STREAMS") == cpu_count()
    assert imported.get_property("PERF_COUNT") is False  # import takes its own config
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(imported(x)[0], compiled(x)[0])
