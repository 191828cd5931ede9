"""Discovery: node names and devices from Ray's node table; the live cluster's devices."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infermux.cluster.discovery import devices_of, node_infos

pytestmark = pytest.mark.cluster

HEAD_RES = "node:__internal_head__"


def _node(node_id, host="vm", labels=None, alive=True, **resources):
    return {"NodeID": node_id, "Alive": alive, "NodeManagerHostname": host,
            "NodeManagerAddress": "127.0.0.1", "Resources": resources, "Labels": labels or {}}


@pytest.mark.parametrize("nodes, names", [
    # one node per host: hostnames
    ([_node("aa" * 28, "gpu-box", **{HEAD_RES: 1}), _node("bb" * 28, "cpu-box")], ["gpu-box", "cpu-box"]),
    # several nodes on one host: the head keeps the hostname, the others get an id suffix
    ([_node("aa" * 28, **{HEAD_RES: 1}), _node("bbbbbb" + "0" * 50), _node("cccccc" + "0" * 50)],
     ["vm", "vm-bbbbbb", "vm-cccccc"]),
    # the infermux-node label wins, and is cleaned for the device-string grammar
    ([_node("aa" * 28, labels={"infermux-node": "rack 1/gpu"}), _node("bb" * 28, labels={"infermux-node": "b"})],
     ["rack-1-gpu", "b"]),
    # dead nodes are not listed
    ([_node("aa" * 28, "x"), _node("bb" * 28, "y", alive=False)], ["x"]),
    # a duplicate label is made unique (with a warning saying to fix it)
    ([_node("aa" * 28, labels={"infermux-node": "n"}, **{HEAD_RES: 1}), _node("bbbbbb" + "0" * 50, labels={"infermux-node": "n"})],
     ["n", "n-bbbbbb"]),
])
def test_node_names_are_readable_unique_and_stable(nodes, names):
    infos = node_infos(nodes)
    assert sorted(n.name for n in infos) == sorted(names)
    assert node_infos(list(reversed(nodes))) == infos  # order of the table does not matter


def test_devices_follow_node_resources():
    nodes = node_infos([
        _node("aa" * 28, labels={"infermux-node": "a"}, CPU=16, memory=8 << 30, **{HEAD_RES: 1}),
        _node("bb" * 28, labels={"infermux-node": "b"}, CPU=4, GPU=2),
        _node("cc" * 28, labels={"infermux-node": "c"}, CPU=2, GPU=1, VPU=0.5, FGPU=1),
    ])
    names = [d.name for d in devices_of(nodes, ("CPU", "GPU", "VPU"))]
    assert names == ["CPU@a", "CPU@b", "GPU.0@b", "GPU.1@b", "CPU@c", "GPU@c", "VPU@c"]
    cpu_a = devices_of(nodes)[0]
    assert (cpu_a.kind, cpu_a.id, cpu_a.node, cpu_a.memory_bytes) == ("CPU", "", "a", 8 << 30)
    assert "FGPU@c" in [d.name for d in devices_of(nodes, ("FGPU",))]


def test_the_live_cluster_lists_every_node_device(core):
    devices = core.available_devices
    assert devices[0] == "CPU"  # this process's own CPU comes first, as on one machine
    assert set(devices) >= {"CPU@head", "CPU@node-b", "VPU@node-b", "SLOW@node-b",
                            "CPU@node-c", "FGPU@node-c", "SLOW@node-c"}
    assert core.get_property("FGPU@node-c", "DEVICE_TYPE") == "DISCRETE"
    assert "emulated" in core.get_property("VPU@node-b", "FULL_DEVICE_NAME")


def test_joining_and_leaving_nodes_change_available_devices(core, spare_node, ray_cluster, tiny, wait_until):
    name, node = spare_node(num_cpus=1, num_gpus=2)
    assert {f"CPU@{name}", f"GPU.0@{name}", f"GPU.1@{name}"} <= set(core.available_devices)
    # a GPU node without CuPy: the actor is placed (Ray assigns it a GPU) and says what is missing
    with pytest.raises(Exception, match="CuPy|CUDA"):
        core.compile_model(tiny.model(), f"GPU.1@{name}")
    ray_cluster.remove_node(node)
    wait_until(lambda: not any(d.endswith(f"@{name}") for d in core.available_devices), what="the node to leave")


def test_unknown_cluster_devices_are_errors_naming_the_devices(core, tiny):
    from infermux.errors import DeviceNotFoundError

    with pytest.raises(DeviceNotFoundError, match=r"no device CPU@nowhere: its devices are CPU@head"):
        core.compile_model(tiny.model(), "CPU@nowhere")
    with pytest.raises(DeviceNotFoundError, match="no device FGPU.3@node-c"):
        core.get_property("FGPU.3@node-c", "FULL_DEVICE_NAME")


def test_importing_infermux_starts_no_ray():
    code = ("import sys, infermux as im; im.Core().available_devices; "
            "assert 'ray' not in sys.modules and 'infermux.cluster' not in sys.modules, sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
