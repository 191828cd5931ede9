"""Control flow: If, Loop, Scan.

Graph attributes arrive as callables built by the plan (``devices/plan.py``): ``body(*inputs)``
runs the subgraph with the enclosing graph's values already bound and returns its outputs as a
list.  So these kernels are plain loops over those callables.
"""

from __future__ import annotations

from infermux.ops.registry import kernel


def _truth(xp, value) -> bool:
    return bool(value.reshape(-1)[0]) if hasattr(value, "reshape") else bool(value)


@kernel("If", since=1)
def if_(xp, cond, /, *, then_branch, else_branch):
    """Run one branch; its outputs are the node's."""
    outs = (then_branch if _truth(xp, cond) else else_branch)()
    return tuple(outs)


def _stack(xp, values: list):
    if not values:
        return xp.zeros((0,), dtype=xp.float32)
    return xp.stack([xp.asarray(v) for v in values])


@kernel("Loop", since=1)
def loop(xp, max_trip_count=None, cond=None, /, *carried, body, _num_outputs):
    """``for i in range(M) while cond``: body(i, cond, *carried) -> (cond, *carried, *scan)."""
    import numpy as np

    trips = int(max_trip_count.reshape(-1)[0]) if max_trip_count is not None else None
    keep_going = _truth(xp, cond) if cond is not None else True
    state = list(carried)
    n_scan = _num_outputs - len(state)
    scans: list[list] = [[] for _ in range(n_scan)]
    i = 0
    while keep_going and (trips is None or i < trips):
        outs = body(xp.asarray(np.array(i, dtype=np.int64)),
                    xp.asarray(np.array(keep_going, dtype=np.bool_)), *state)
        keep_going = _truth(xp, outs[0]) if outs[0] is not None else True
        state = list(outs[1:1 + len(state)])
        for k, value in enumerate(outs[1 + len(state):]):
            scans[k].append(value)
        i += 1
    return tuple(state) + tuple(_stack(xp, s) for s in scans)


def _scan_core(xp, state, scan_inputs, body, num_scan_outputs, in_axes, in_dirs, out_axes, out_dirs):
    n = len(scan_inputs)
    in_axes = list(in_axes or [0] * n)
    in_dirs = list(in_dirs or [0] * n)
    moved = [xp.moveaxis(x, a, 0) if a else x for x, a in zip(scan_inputs, in_axes)]
    length = moved[0].shape[0] if moved else 0
    for m in moved:
        if m.shape[0] != length:
            raise ValueError(f"Scan inputs disagree on the sequence length: {[x.shape[0] for x in moved]}")
    outs_per_step: list[list] = [[] for _ in range(num_scan_outputs)]
    state = list(state)
    for t in range(length):
        step_inputs = [m[length - 1 - t] if d else m[t] for m, d in zip(moved, in_dirs)]
        outs = body(*state, *step_inputs)
        state = list(outs[:len(state)])
        for k, value in enumerate(outs[len(state):]):
            outs_per_step[k].append(value)
    out_axes = list(out_axes or [0] * num_scan_outputs)
    out_dirs = list(out_dirs or [0] * num_scan_outputs)
    results = []
    for k, values in enumerate(outs_per_step):
        if out_dirs[k]:
            values = values[::-1]
        stacked = _stack(xp, values)
        axis = out_axes[k]
        if axis < 0:
            axis += stacked.ndim
        results.append(xp.moveaxis(stacked, 0, axis) if axis else stacked)
    return state, results


@kernel("Scan", since=9)
def scan(xp, *inputs, body, num_scan_inputs, scan_input_axes=None, scan_input_directions=None,
         scan_output_axes=None, scan_output_directions=None, _num_outputs):
    """Iterate ``body`` over slices of the scan inputs, threading the state variables."""
    n_state = len(inputs) - num_scan_inputs
    state, outs = _scan_core(xp, inputs[:n_state], inputs[n_state:], body, _num_outputs - n_state,
                             scan_input_axes, scan_input_directions, scan_output_axes,
                             scan_output_directions)
    return tuple(state) + tuple(outs)


@kernel("Scan", since=8)
def scan_v8(xp, sequence_lens, /, *inputs, body, num_scan_inputs, directions=None, _num_outputs):
    """Opset-8 Scan: a leading batch axis on every input, scan axis 1, optional lengths."""
    n_state = len(inputs) - num_scan_inputs
    batch = inputs[0].shape[0]
    per_batch = []
    for b in range(batch):
        length = int(sequence_lens[b]) if sequence_lens is not None else None
        scan_in = [x[b][:length] if length is not None else x[b] for x in inputs[n_state:]]
        state, outs = _scan_core(xp, [x[b] for x in inputs[:n_state]], scan_in, body,
                                 _num_outputs - n_state, None, directions, None, None)
        per_batch.append(state + outs)
    return tuple(xp.stack([pb[k] for pb in per_batch]) for k in range(_num_outputs))
