import pytest

from infermux.errors import InvalidDeviceStringError
from infermux.scheduler.device_string import Batch, Hardware, Item, Virtual, format_device, parse_device

CPU, GPU, GPU1 = Hardware("CPU"), Hardware("GPU"), Hardware("GPU", "1")


@pytest.mark.parametrize("text, tree", [
    ("CPU", CPU),
    ("GPU.1", GPU1),
    ("GPU.1@node-2", Hardware("GPU", "1", "node-2")),
    ("AUTO", Virtual("AUTO")),
    ("AUTO:GPU,CPU", Virtual("AUTO", (Item(GPU), Item(CPU)))),
    ("AUTO:-CPU", Virtual("AUTO", (Item(CPU, excluded=True),))),
    ("AUTO:GPU.1,-CPU", Virtual("AUTO", (Item(GPU1), Item(CPU, excluded=True)))),
    ("MULTI:GPU(4),CPU", Virtual("MULTI", (Item(GPU, 4), Item(CPU)))),
    ("MULTI:CPU@node-a,CPU@node-b", Virtual("MULTI", (Item(Hardware("CPU", "", "node-a")),
                                                      Item(Hardware("CPU", "", "node-b"))))),
    ("HETERO:GPU,CPU", Virtual("HETERO", (Item(GPU), Item(CPU)))),
    ("BATCH:GPU(8)", Batch(GPU, 8)),
    ("BATCH:CPU", Batch(CPU, None)),
    ("HETERO:AUTO:GPU,CPU", Virtual("HETERO", (Item(Virtual("AUTO", (Item(GPU), Item(CPU)))),))),
    ("HETERO:BATCH:GPU(8),CPU", Virtual("HETERO", (Item(Batch(GPU, 8)), Item(CPU)))),
    ("HETERO:GPU.0@node-c,CPU@node-b", Virtual("HETERO", (Item(Hardware("GPU", "0", "node-c")),
                                                          Item(Hardware("CPU", "", "node-b"))))),
])
def test_parses_to_the_expected_tree_and_back(text, tree):
    assert parse_device(text) == tree
    assert format_device(tree) == text


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("MULTI", "MULTI needs a device list"),
    ("BATCH", "BATCH needs a device list"),
    ("HETERO", "HETERO needs a device list"),
    ("MULTI:", "list after 'MULTI:' is empty"),
    ("MULTI:CPU(0)", "must be > 0, while 0 is passed"),
    ("BATCH:CPU(0)", "Batch value for 'CPU' must be > 0"),
    ("BATCH:CPU(abc)", "must be a positive integer, got 'abc'"),
    ("MULTI:CPU(4", "unclosed"),
    ("AUTO: CPU", "spaces are not allowed"),
    ("MULTI:AUTO:CPU", "meta device should not be in the device candidate list"),
    ("AUTO:MULTI:CPU", "meta device should not be in the device candidate list"),
    ("MULTI:-CPU", "'-' (exclude) is only allowed in an AUTO list"),
    ("CPU(2)", "only allowed inside a device list"),
    ("HETERO:MULTI:CPU", "not MULTI or HETERO"),
    ("GPU,CPU", "unexpected ',CPU'"),
    ("AUTO:GPU,", "expected a device name"),
])
def test_malformed_strings_quote_the_string_and_point_at_the_fault(text, message):
    with pytest.raises(InvalidDeviceStringError) as info:
        parse_device(text)
    assert message in str(info.value)
    if text:
        assert f"'{text}'" in str(info.value)
        assert "^" in str(info.value)


@pytest.mark.parametrize("device, config, expected", [
    ("MULTI", {"MULTI_DEVICE_PRIORITIES": "CPU"}, "MULTI:CPU"),
    ("BATCH", {"MULTI_DEVICE_PRIORITIES": "CPU(4)"}, "BATCH:CPU(4)"),
    ("HETERO", {"MULTI_DEVICE_PRIORITIES": "GPU,CPU"}, "HETERO:GPU,CPU"),
    ("MULTI:CPU", {"MULTI_DEVICE_PRIORITIES": "CPU"}, "MULTI:CPU"),
])
def test_priorities_in_the_config_equal_the_list_in_the_string(device, config, expected):
    from infermux.devices.registry import PluginRegistry
    from infermux.scheduler.dispatch import Dispatcher

    assert format_device(Dispatcher(PluginRegistry()).parse(device, config)) == expected


def test_a_list_in_both_places_must_agree():
    from infermux.devices.registry import PluginRegistry
    from infermux.scheduler.dispatch import Dispatcher

    with pytest.raises(InvalidDeviceStringError, match="Device priority / ID mismatch"):
        Dispatcher(PluginRegistry()).parse("MULTI:CPU", {"MULTI_DEVICE_PRIORITIES": "GPU"})
