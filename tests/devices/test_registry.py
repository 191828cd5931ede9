"""The plugin registry: built-ins, an entry-point plugin really installed with pip, registration,
unloading, and device names as OpenVINO spells them."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import infermux as im
from infermux.devices.gpu import cuda_device_count
from infermux.devices.registry import PluginRegistry
from tests.helpers import mlp_reference, tiny_mlp

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "infermux_example_plugin"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A folder where pip installed the example plugin package (once per session)."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index",
           "--no-deps", "--disable-pip-version-check", "--target", str(target), str(FIXTURE)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def installed_plugin(plugin_site):
    """The installed example plugin on ``sys.path`` for one test (removed afterwards, so other
    tests see the default devices)."""
    target = plugin_site
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("infermux_example_plugin")]:
        del sys.modules[name]


def test_installed_entry_point_plugin_is_listed_and_runs(installed_plugin):
    assert (installed_plugin / "infermux_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    core = im.Core()
    assert core.available_devices == ["CPU", "EXAMPLE"]
    assert core.get_property("EXAMPLE", "FULL_DEVICE_NAME").startswith("Example accelerator")
    proto = tiny_mlp()
    model = core.read_model(proto)
    assert core.query_model(model, "EXAMPLE") == {"mm": "EXAMPLE", "add": "EXAMPLE", "relu": "EXAMPLE"}
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(core.compile_model(model, "EXAMPLE")({"x": x})[0],
                               mlp_reference(proto, x), rtol=1e-6)


def test_the_plugin_is_found_through_the_installed_metadata(installed_plugin):
    sys.path.remove(str(installed_plugin))
    importlib.invalidate_caches()
    try:
        assert "EXAMPLE" not in im.Core().available_devices
    finally:
        sys.path.insert(0, str(installed_plugin))
        importlib.invalidate_caches()
    assert "EXAMPLE" in im.Core().available_devices


class TwoDevices:
    """A minimal plugin with two devices."""

    name = "TWO"

    def devices(self):
        return ["0", "1"]

    def get_property(self, key, device_id=""):
        return {"AVAILABLE_DEVICES": ["0", "1"], "SUPPORTED_PROPERTIES": {"AVAILABLE_DEVICES": "RO"}}[key]


class Broken:
    """A plugin whose device enumeration fails."""

    name = "BROKEN"

    def devices(self):
        raise RuntimeError("driver crashed")


def test_register_an_object_a_class_and_a_path():
    core = im.Core()
    core.register_plugin(TwoDevices(), "TWO")
    core.register_plugin(TwoDevices, "TWOCLS")
    core.register_plugin("tests.devices.test_registry:TwoDevices", "TWOPATH")
    assert core.available_devices == ["CPU", "TWO.0", "TWO.1", "TWOCLS.0", "TWOCLS.1",
                                      "TWOPATH.0", "TWOPATH.1"]
    assert core.get_property("TWO", "AVAILABLE_DEVICES") == ["0", "1"]


def test_a_broken_plugin_is_not_listed():
    core = im.Core()
    core.register_plugin(Broken(), "BROKEN")
    assert core.available_devices == ["CPU"]


@pytest.mark.parametrize("name, message", [
    ("MY.DEV", "Device name must not contain dot '.' symbol"),
    ("MY DEV", "cannot name a device"),
])
def test_bad_plugin_names(name, message):
    with pytest.raises(im.InvalidDeviceStringError, match=message):
        im.Core().register_plugin(TwoDevices(), name)


@pytest.mark.parametrize("device, message", [
    ("cpu", 'Device with "cpu" name is not registered'),
    ("Cpu", 'Device with "Cpu" name is not registered'),
    ("CPU.0", "CPU plugin supports only '' as device id"),
    pytest.param("GPU", "no CUDA GPU is available", marks=pytest.mark.skipif(
        cuda_device_count() > 0, reason="a CUDA GPU is present")),
    ("VPU", "no VPU is present"),
])
def test_device_names_are_checked_as_openvino_does(device, message, monkeypatch):
    monkeypatch.delenv("INFERMUX_VPU_EMULATION", raising=False)
    core = im.Core()
    with pytest.raises(RuntimeError, match=message):
        core.compile_model(core.read_model(tiny_mlp()), device)


def test_unload_drops_settings_and_uncovers_the_builtin(monkeypatch):
    from infermux.devices.vpu import VPUPlugin

    monkeypatch.delenv("INFERMUX_VPU_EMULATION", raising=False)
    core = im.Core()
    core.set_property("CPU", {"PERF_COUNT": True})
    core.unload_plugin("CPU")
    assert core.get_property("CPU", "PERF_COUNT") is False  # a fresh CPU plugin
    core.register_plugin(VPUPlugin(emulate=True), "VPU")
    assert "VPU" in core.available_devices
    core.unload_plugin("VPU")
    assert "VPU" not in core.available_devices  # the built-in VPU, without a backend
    with pytest.raises(im.DeviceNotFoundError, match='"NOPE" name is not registered'):
        core.unload_plugin("NOPE")


def test_one_id_is_listed_by_its_bare_name():
    registry = PluginRegistry()
    registry.register(TwoDevices(), "TWO")

    class One(TwoDevices):
        def devices(self):
            return ["0"]

    registry.register(One(), "ONE")
    assert registry.available_devices() == ["CPU", "ONE", "TWO.0", "TWO.1"]


def test_plugins_load_lazily():
    registry = PluginRegistry()
    assert "GPU" in registry.names() and "VPU" in registry.names()
    assert registry.loaded() == {}
    registry.get("CPU")
    assert list(registry.loaded()) == ["CPU"]
