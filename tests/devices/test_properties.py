"""Properties: RO/RW, defaults, scopes (core-wide, per device, per id, per compile,
DEVICE_PROPERTIES), core keys, validation messages, device metrics."""

from __future__ import annotations

import numpy as np
import pytest

import infermux as im
from infermux.devices.properties import (
    RO,
    RW,
    PropertySpec,
    PropertyTable,
    bool_validator,
    flatten_device_properties,
    precision_validator,
)
from tests.helpers import tiny_mlp


@pytest.fixture
def core():
    return im.Core()


@pytest.fixture
def model(core):
    return core.read_model(tiny_mlp())


def _table() -> PropertyTable:
    return PropertyTable("DEV", [
        PropertySpec("FULL_DEVICE_NAME", RO, "Device"),
        PropertySpec("LIVE", RO, compute=lambda device_id: f"live:{device_id}"),
        PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT")),
        PropertySpec("INFERENCE_PRECISION_HINT", RW, "f32",
                     precision_validator("INFERENCE_PRECISION_HINT", ("f32", "f16"), "DEV")),
    ])


def test_table_scopes_from_default_to_device_id_to_compile():
    table = _table()
    assert table.supported() == {"FULL_DEVICE_NAME": RO, "LIVE": RO, "PERF_COUNT": RW,
                                 "INFERENCE_PRECISION_HINT": RW, "SUPPORTED_PROPERTIES": RO}
    assert table.get("LIVE", "1") == "live:1"
    table.set({"PERF_COUNT": "YES"})
    table.set({"INFERENCE_PRECISION_HINT": np.float16}, "1")
    assert table.get("PERF_COUNT", "1") is True and table.get("INFERENCE_PRECISION_HINT", "0") == "f32"
    assert table.get("INFERENCE_PRECISION_HINT", "1") == "f16"
    cfg, explicit = table.resolve({"PERF_COUNT": False}, "1")
    assert cfg == {"PERF_COUNT": False, "INFERENCE_PRECISION_HINT": "f16"}
    assert explicit == {"PERF_COUNT", "INFERENCE_PRECISION_HINT"}
    cfg, explicit = table.resolve(None, "0")
    assert cfg["INFERENCE_PRECISION_HINT"] == "f32" and explicit == {"PERF_COUNT"}


@pytest.mark.parametrize("value, normalised", [
    ("f16", "f16"), ("float16", "f16"), (np.float16, "f16"), (im.Type.f16, "f16"),
    ("F32", "f32"), (im.Type.f32, "f32"), (np.dtype("float32"), "f32"),
])
def test_precision_values_normalise(value, normalised):
    assert precision_validator("INFERENCE_PRECISION_HINT", ("f32", "f16"), "GPU")(value) == normalised


@pytest.mark.parametrize("config, message", [
    ({"FULL_DEVICE_NAME": "x"}, "Property FULL_DEVICE_NAME of DEV is read-only"),
    ({"NOPE": 1}, "Unsupported property NOPE by DEV plugin. Supported: PERF_COUNT, INFERENCE_PRECISION_HINT"),
    ({"PERF_COUNT": "maybe"}, "Wrong value maybe for property key PERF_COUNT. Expected True/False"),
    ({"INFERENCE_PRECISION_HINT": "bf16"}, "The DEV plugin computes in f32/f16 only"),
    ({"DEVICE_PROPERTIES": {"DEV": 5}}, "Expected a dict of device name -> dict of properties"),
])
def test_validation_messages(config, message):
    with pytest.raises(im.PropertyError, match=message):
        _table().resolve(config)


def test_core_keys_are_ignored_by_plugins():
    cfg, _ = _table().resolve({"CACHE_DIR": "/tmp/x", "PERF_COUNT": True})
    assert "CACHE_DIR" not in cfg and cfg["PERF_COUNT"] is True


def test_device_properties_flatten_generic_then_specific():
    config = {"PERF_COUNT": False, "DEVICE_PROPERTIES": {
        "GPU": {"PERF_COUNT": True, "NUM_STREAMS": 2}, "GPU.1": {"NUM_STREAMS": 3}, "CPU": {"X": 1}}}
    assert flatten_device_properties(config, "GPU", "1") == {"PERF_COUNT": True, "NUM_STREAMS": 3}
    assert flatten_device_properties(config, "GPU", "0") == {"PERF_COUNT": True, "NUM_STREAMS": 2}
    assert flatten_device_properties(config, "CPU") == {"PERF_COUNT": False, "X": 1}


# -- through the Core ------------------------------------------------------------------------
def test_core_keys_have_defaults_and_scopes(core, tmp_path):
    assert core.get_property("CACHE_DIR") == "" and core.get_property("", "ENABLE_MMAP") is True
    assert core.get_property("SUPPORTED_PROPERTIES") == {
        "CACHE_DIR": RW, "ENABLE_MMAP": RW, "FORCE_TBB_TERMINATE": RW}
    core.set_property({"CACHE_DIR": tmp_path / "all"})
    core.set_property("CPU", {"CACHE_DIR": str(tmp_path / "cpu"), "PERF_COUNT": True})
    assert core.get_property("CACHE_DIR") == str(tmp_path / "all")
    assert core.get_property("CPU", "CACHE_DIR") == str(tmp_path / "cpu")
    assert core.get_property("CPU", "PERF_COUNT") is True
    with pytest.raises(im.PropertyError, match="FULL_DEVICE_NAME is not a core property"):
        core.get_property("FULL_DEVICE_NAME")
    with pytest.raises(im.PropertyError, match="Wrong value 5 for property key CACHE_DIR"):
        core.set_property({"CACHE_DIR": 5})


def test_core_wide_plugin_keys_reach_every_device_that_takes_them(core, model):
    from infermux.devices.vpu import VPUPlugin

    core.set_property({"PERF_COUNT": True})
    assert core.get_property("CPU", "PERF_COUNT") is True
    core.register_plugin(VPUPlugin(emulate=True), "VPU")  # registered later: gets it too
    assert core.get_property("VPU", "PERF_COUNT") is True
    assert core.compile_model(model, "CPU").get_property("PERF_COUNT") is True
    with pytest.raises(im.PropertyError, match="Unsupported property NOT_A_KEY: neither the Core "
                                               "nor any device"):
        core.set_property({"NOT_A_KEY": 1})


def test_core_wide_device_properties_go_to_each_named_device(core):
    core.set_property({"DEVICE_PROPERTIES": {"CPU": {"PERFORMANCE_HINT": "THROUGHPUT"}}})
    assert core.get_property("CPU", "PERFORMANCE_HINT") == "THROUGHPUT"


def test_compile_config_beats_device_defaults_and_takes_device_properties(core, model):
    core.set_property("CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    compiled = core.compile_model(model, "CPU", {"DEVICE_PROPERTIES": {"CPU": {"PERFORMANCE_HINT": "LATENCY"},
                                                                       "GPU": {"NUM_STREAMS": 4}}})
    assert compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
    assert core.compile_model(model, "CPU").get_property("PERFORMANCE_HINT") == "THROUGHPUT"


def test_property_keys_may_be_helper_functions(core, model):
    props = im.properties
    compiled = core.compile_model(model, "CPU", {props.hint.performance_mode: "THROUGHPUT",
                                                 props.enable_profiling(): True})
    assert compiled.get_property(props.hint.performance_mode()) == "THROUGHPUT"
    assert core.get_property("CPU", props.device.full_name)
