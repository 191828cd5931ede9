"""The ``infermux`` command line; ``bench`` follows OpenVINO's ``benchmark_app``.

    infermux devices                             # one line per device
    infermux run model.onnx -i image=x.npy --output out.npz
    infermux bench model.onnx -hint throughput -t 10 --json stats.json
    infermux example                             # quick start on the bundled digit classifier
    infermux submit model.onnx --address http://head:8265 --inputs data/ --output out/

Each subcommand is a ``cmd_<name>(args) -> exit code`` function with an ``_<name>_arguments``
declaration beside it, registered once in :data:`COMMANDS`.  Options every command that opens
the runtime shares (the device, ``-c KEY=VALUE``) come from :func:`_add_runtime_options`, and
the runtime is opened only by :func:`_open_core`.  Results go to stdout, progress and notes to
stderr.  Errors print infermux's message and exit with 1 (2 for bad usage); ``--verbose`` adds
the traceback and the library's debug log.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from infermux.benchmark import BenchResult, BenchSettings, _info, print_report, run_benchmark

__all__ = ["COMMANDS", "BenchResult", "BenchSettings", "CliError", "Command", "build_parser", "main",
           "print_report", "run_benchmark", "summarize"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "tput": "THROUGHPUT",
          "cumulative_throughput": "CUMULATIVE_THROUGHPUT", "ctput": "CUMULATIVE_THROUGHPUT", "none": None}
_DEFAULT_DURATION_S = 60.0  # benchmark_app's default for CPU/GPU/NPU when neither -t nor -niter


class CliError(Exception):
    """A problem with what the user asked for, found after parsing; ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, its arguments and the function that runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -- argument types -------------------------------------------------------------------------
def _key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (KEY, VALUE), for ``-c``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. NUM_STREAMS=2), got '{text}'")
    return key.strip(), value.strip()


def _input_spec(text: str) -> tuple[str | None, str]:
    """``NAME=FILE`` -> (NAME, FILE); a bare ``FILE`` (or one that exists as written) -> (None, FILE)."""
    name, sep, path = text.partition("=")
    if not sep or os.path.exists(text):
        return None, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npy or FILE.npy, got '{text}'")
    return name, path


_ShapeSpec = list[tuple[str | None, tuple[int, ...]]]  # what one --shape argument parses to
_SHAPE_ITEM = re.compile(r"\s*([^\[\]=,]*?)\s*=?\s*\[([^\[\]]*)\]\s*(?:,|$)")


def _shape_spec(text: str) -> _ShapeSpec:
    """``image[1,1,28,28]``, ``image=[1,1,28,28]``, ``[1,1,28,28]`` or several joined by commas."""
    items, pos = [], 0
    while pos < len(text):
        m = _SHAPE_ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise argparse.ArgumentTypeError(
                f"expected NAME[d0,d1,...] or [d0,d1,...] (e.g. image[4,1,28,28]), got '{text}'")
        try:
            dims = tuple(int(d) for d in m.group(2).split(",") if d.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"dimensions must be integers, got '[{m.group(2)}]'") from None
        if any(d < 0 for d in dims):
            raise argparse.ArgumentTypeError(f"dimensions must not be negative, got '[{m.group(2)}]'")
        items.append((m.group(1) or None, dims))
        pos = m.end()
    return items


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'")
    return value


# -- shared options and the runtime -----------------------------------------------------------
def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that opens the runtime (cluster ``--address`` will join here)."""
    parser.add_argument("-d", "--device", default=None, metavar="DEVICE",
                        help="device to run on, e.g. CPU (default: the runtime's default device)")
    parser.add_argument("-c", "--config", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="compile property, e.g. -c NUM_STREAMS=2 (repeatable)")


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="an ONNX model file")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", type=_input_spec, action="append", default=[], metavar="NAME=FILE",
                        help="input data from a .npy or .npz file: NAME=FILE, or a bare FILE for a "
                             "one-input model or an .npz keyed by input name (repeatable); inputs "
                             "not given are filled with seeded random data")
    parser.add_argument("-shape", "--shape", type=_shape_spec, action="append", default=[],
                        metavar="NAME[dims]", help="data shape for random inputs with dynamic "
                        "dimensions, e.g. image[4,1,28,28]; without a name it applies to every input")
    parser.add_argument("-b", "--batch-size", type=_non_negative_int, default=0, metavar="N",
                        help="batch (first dimension) of random inputs (default: 1 where dynamic)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input data (default 0)")


def _open_core(args: argparse.Namespace):
    """The :class:`~infermux.Core` a command works with."""
    import infermux

    return infermux.Core()


def _compile(core, model_path: str, args: argparse.Namespace, config: dict[str, Any] | None = None):
    """Compile a model for ``args.device``; ``-c`` values override ``config``."""
    merged = {k: v for k, v in (config or {}).items() if v is not None}
    merged.update(dict(args.config))
    return core.compile_model(core.read_model(model_path), args.device, merged)


def _devices_of(compiled) -> str:
    try:
        return ", ".join(compiled.get_property("EXECUTION_DEVICES"))
    except Exception:  # noqa: BLE001 - informational only
        return repr(compiled)


def _note(message: str) -> None:
    print(message, file=sys.stderr)


# -- input data --------------------------------------------------------------------------------
def _load_file(path: str) -> dict[str, np.ndarray] | np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise CliError(f"cannot read input file '{path}': {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CliError(f"cannot read input file '{path}': not a .npy/.npz array file ({exc})") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {key: data[key] for key in data.files}
    return data


def _given_inputs(compiled, specs: Sequence[tuple[str | None, str]]) -> dict[str, np.ndarray]:
    """{input name: array} from ``--input`` specs; names are checked against the model."""
    names = [p.any_name for p in compiled.inputs]
    arrays: dict[str, np.ndarray] = {}
    for name, path in specs:
        data = _load_file(path)
        if isinstance(data, dict) and name is None:
            for key, value in data.items():
                arrays[compiled.input(key).any_name] = value
        elif isinstance(data, dict):
            if name not in data and len(data) != 1:
                raise CliError(f"'{path}' has no array '{name}'; it holds: {', '.join(data) or 'nothing'}")
            arrays[compiled.input(name).any_name] = data.get(name, next(iter(data.values()), None))
        elif name is None and len(names) != 1:
            raise CliError(f"'{path}' does not say which input it is and the model has {len(names)} "
                           f"inputs ({', '.join(names)}); write NAME={path}")
        else:
            arrays[compiled.input(name).any_name if name else names[0]] = data
    return arrays


def _data_shape(name: str, shape, explicit: tuple[int, ...] | None, batch_size: int) -> tuple[int, ...]:
    """Concrete dims for a random input: ``--shape``, else static dims and 1 (or ``-b``) for dynamic ones."""
    if explicit is not None:
        return explicit
    if shape is None:
        raise CliError(f"input '{name}' has an unknown rank: give its data shape with --shape {name}[...] "
                       f"or its data with --input {name}=FILE.npy", EXIT_USAGE)
    dims = [d.get_length() if d.is_static else max(1, d.get_min_length()) for d in shape]
    if batch_size and dims:
        dims[0] = batch_size
    return tuple(dims)


def _random_array(rng: np.random.Generator, name: str, element_type, dims: tuple[int, ...]) -> np.ndarray:
    dtype = np.dtype(np.float32) if element_type.is_dynamic() else element_type.to_dtype()
    if dtype.kind == "f":
        return rng.random(dims).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, dims).astype(dtype)  # small and non-negative: safe as indices
    if dtype.kind == "b":
        return rng.random(dims) < 0.5
    raise CliError(f"input '{name}' holds {element_type.name} elements, which cannot be made up; "
                   f"give it with --input {name}=FILE.npy")


def _shape_table(compiled, specs: Sequence[_ShapeSpec]) -> dict[str | None, tuple[int, ...]]:
    """{input name (None: every other input): dims} from the ``--shape`` arguments."""
    table: dict[str | None, tuple[int, ...]] = {}
    for items in specs:
        for name, dims in items:
            table[compiled.input(name).any_name if name else None] = dims
    return table


def _feeds_from_args(compiled, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Every model input: from ``--input`` files, the rest seeded random data (noted on stderr)."""
    arrays = _given_inputs(compiled, args.input)
    shapes = _shape_table(compiled, args.shape)
    rng = np.random.default_rng(args.seed)
    for port, info in zip(compiled.inputs, compiled.device_model.input_infos, strict=True):
        name = port.any_name
        if name in arrays:
            continue
        if info.kind != "tensor":
            raise CliError(f"input '{name}' is a {info.kind}; give it with --input")
        dims = _data_shape(name, info.shape, shapes.get(name, shapes.get(None)), args.batch_size)
        arrays[name] = _random_array(rng, name, port.element_type, dims)
        _note(f"input '{name}' not given: using random {arrays[name].dtype}"
              f"[{','.join(map(str, dims))}] (seed {args.seed})")
    return arrays


# -- devices -----------------------------------------------------------------------------------
_KEY_PROPERTIES = ("DEVICE_TYPE", "DEVICE_ARCHITECTURE", "OPTIMIZATION_CAPABILITIES", "RANGE_FOR_STREAMS")


def _devices_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="print every property of each device")
    parser.add_argument("--address", metavar="ADDRESS", help="list a Ray cluster's devices instead "
                        "(with node, kind, memory, load): 'auto', 'host:6379' or 'ray://host:10001'")


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return " ".join(value) or "-"
    return str(getattr(value, "value", value))


def cmd_devices(args: argparse.Namespace) -> int:
    """One line per device: its name, FULL_DEVICE_NAME and key properties (``--all``: every one)."""
    from infermux.errors import PropertyError

    if args.address:
        from infermux.cluster.jobs import print_cluster_devices

        return print_cluster_devices(args.address, args.all)
    core = _open_core(args)
    for device in core.available_devices:
        full_name = core.get_property(device, "FULL_DEVICE_NAME")
        keys = list(core.get_property(device, "SUPPORTED_PROPERTIES")) if args.all else _KEY_PROPERTIES
        values = []
        for key in keys:
            if key in ("FULL_DEVICE_NAME", "SUPPORTED_PROPERTIES"):
                continue
            with contextlib.suppress(PropertyError):  # a plugin need not have every key
                values.append((key, _format_value(core.get_property(device, key))))
        if args.all:
            print(f"{device}: {full_name}")
            print("\n".join(f"    {key}: {value}" for key, value in values))
        else:
            print(f"{device}: {full_name} | " + ", ".join(f"{k}={v}" for k, v in values))
    return EXIT_OK


# -- run ---------------------------------------------------------------------------------------
def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_argument(parser)
    _add_runtime_options(parser)
    _add_data_options(parser)
    parser.add_argument("-o", "--output", metavar="OUT.npz", help="write every output to an .npz file")


def _is_probabilities(arr: np.ndarray) -> bool:
    """A 2-D float array whose rows look like a softmax."""
    return (arr.ndim == 2 and arr.dtype.kind == "f" and arr.size > 0 and bool((arr >= 0).all())
            and bool(np.allclose(arr.sum(axis=1), 1.0, atol=1e-3)))


def summarize(name: str, value: Any, max_rows: int = 4) -> list[str]:
    """Lines describing one output: shape and dtype, then top-5 per row or min/max/mean."""
    if isinstance(value, list):
        return [f"{name}: sequence of {len(value)} tensors"]
    arr = np.asarray(value)
    head = f"{name}: shape [{', '.join(map(str, arr.shape))}], {arr.dtype}"
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return [head]
    if not _is_probabilities(arr):
        return [f"{head}, min {arr.min():.6g}, max {arr.max():.6g}, mean {arr.astype(np.float64).mean():.6g}"]
    lines = [head]
    for row, probs in enumerate(arr[:max_rows]):
        top = np.argsort(-probs, kind="stable")[:5]
        lines.append(f"  [{row}] top-{len(top)}: " + ", ".join(f"{k} ({probs[k]:.4f})" for k in top))
    if len(arr) > max_rows:
        lines.append(f"  ... {len(arr) - max_rows} more rows")
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    """One inference: inputs from files or random, a summary of each output, optionally an .npz."""
    compiled = _compile(_open_core(args), args.model, args)
    try:
        request = compiled.create_infer_request()
        results = request.infer(_feeds_from_args(compiled, args))
    finally:
        compiled.release_memory()
    print(f"Inference on {_devices_of(compiled)} took {request.latency:.2f} ms")
    outputs = {port.any_name: results[i] for i, port in enumerate(compiled.outputs)}
    for name, value in outputs.items():
        print("\n".join(summarize(name, value)))
    if args.output:
        np.savez(args.output, **{k: np.asarray(v) for k, v in outputs.items() if not isinstance(v, list)})
        _note(f"wrote {len(outputs)} output(s) to {args.output}")
    return EXIT_OK


# -- bench -------------------------------------------------------------------------------------
def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_argument(parser)
    _add_runtime_options(parser)
    _add_data_options(parser)
    parser.add_argument("-hint", "--hint", choices=list(_HINTS), default=None, metavar="HINT",
                        help="PERFORMANCE_HINT: latency, throughput (tput), cumulative_throughput "
                             "(ctput) or none (default: latency with -api sync, else throughput)")
    parser.add_argument("-api", "--api", choices=("sync", "async"), default=None,
                        help="sync: one request in a loop; async: an AsyncInferQueue "
                             "(default: sync with -hint latency, else async)")
    parser.add_argument("-t", "--time", type=_positive_float, default=None, metavar="SECONDS",
                        help=f"run time (default {_DEFAULT_DURATION_S:g} s unless -niter is given)")
    parser.add_argument("-niter", "--niter", type=_non_negative_int, default=0, metavar="N",
                        help="number of iterations")
    parser.add_argument("-nireq", "--nireq", type=_non_negative_int, default=0, metavar="N",
                        help="infer requests for -api async (default OPTIMAL_NUMBER_OF_INFER_REQUESTS)")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _bench_plan(args: argparse.Namespace) -> tuple[str | None, str]:
    """(PERFORMANCE_HINT value, api) with benchmark_app's defaults for whichever is missing."""
    hint = args.hint or ("latency" if args.api == "sync" else "throughput")
    api = args.api or ("sync" if hint == "latency" else "async")
    if api == "sync" and args.nireq > 1:
        _note("-nireq is ignored with -api sync: one request runs at a time")
    return _HINTS[hint], api


def _batch_of(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim >= 2 else 1


def _limits_text(settings: BenchSettings) -> str:
    parts = ([f"{settings.duration_s * 1e3:g} ms duration"] if settings.duration_s else []) + \
            ([f"{settings.niter} iterations"] if settings.niter else [])
    return ", ".join(parts)


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure latency and throughput the way benchmark_app does."""
    hint, api = _bench_plan(args)
    compiled = _compile(_open_core(args), args.model, args, {"PERFORMANCE_HINT": hint})
    try:
        inputs = _feeds_from_args(compiled, args)
        duration_s = args.time if args.time is not None else (0.0 if args.niter else _DEFAULT_DURATION_S)
        settings = BenchSettings(api, args.nireq, args.niter, duration_s, _batch_of(inputs), args.progress)
        nireq = settings.num_requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        _info(f"Model: {args.model}, device {_devices_of(compiled)}, PERFORMANCE_HINT {hint or 'none'}, "
              f"batch size {settings.batch_size}")
        _info(f"Start inference {api}hronously" + (f", {nireq} inference requests" if api == "async" else "")
              + f", limits: {_limits_text(settings)}")
        result = run_benchmark(compiled, inputs, settings)
        _info(f"First inference took {result.first_inference_ms:.2f} ms")
        print_report(result, compiled.get_property("EXECUTION_DEVICES"))
    finally:
        compiled.release_memory()
    if args.json:
        report = {"model": args.model, "device": _devices_of(compiled), "api": api, "hint": hint,
                  "config": dict(args.config), **result.to_dict()}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        _note(f"wrote statistics to {args.json}")
    return EXIT_OK


# -- example -----------------------------------------------------------------------------------
_EXAMPLE_DIGITS = (3, 1, 4, 1, 5, 9, 2, 6)


def _example_arguments(parser: argparse.ArgumentParser) -> None:
    _add_runtime_options(parser)
    parser.add_argument("-t", "--time", type=_positive_float, default=3.0, metavar="SECONDS",
                        help="length of the closing benchmark (default 3)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def cmd_example(args: argparse.Namespace) -> int:
    """Quick start: classify synthetic digits with the bundled model, then benchmark it briefly."""
    from infermux import examples

    model_path = examples.path("lenet")
    compiled = _compile(_open_core(args), model_path, args, {"PERFORMANCE_HINT": "THROUGHPUT"})
    try:
        print(f"Compiled the bundled example model {model_path} for {_devices_of(compiled)}")
        images = examples.synthetic_digits(_EXAMPLE_DIGITS, seed=0)
        probabilities = compiled({"image": images})[0]
        print(f"Classifying {len(images)} synthetic seven-segment digits (28x28, batch {len(images)}):")
        predicted = probabilities.argmax(axis=1)
        for digit, guess, probs in zip(_EXAMPLE_DIGITS, predicted, probabilities, strict=True):
            mark = "" if guess == digit else "   <- wrong"
            print(f"  drawn {digit} -> predicted {guess} (probability {probs[guess]:.3f}){mark}")
        print(f"{int((predicted == np.array(_EXAMPLE_DIGITS)).sum())}/{len(images)} correct")
        print(f"Benchmarking one image at a time for {args.time:g} s (async, PERFORMANCE_HINT THROUGHPUT):")
        settings = BenchSettings("async", 0, 0, args.time, 1, args.progress)
        result = run_benchmark(compiled, {"image": images[:1]}, settings)
        print_report(result, compiled.get_property("EXECUTION_DEVICES"))
    finally:
        compiled.release_memory()
    print(f"Next: infermux bench {model_path} -t 10    infermux run {model_path} -b 4")
    return EXIT_OK


# -- submit (cluster batch inference; the logic is infermux.cluster.jobs) -------------------------
def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL", help="an ONNX model file")
    parser.add_argument("--address", metavar="URL", help="the cluster's job server, e.g. "
                        "http://head:8265 (default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)")
    parser.add_argument("-d", "--device", default="AUTO", metavar="DEVICE",
                        help="device string on the cluster, e.g. MULTI:CPU@a,CPU@b (default: AUTO "
                             "over every cluster device, CUMULATIVE_THROUGHPUT)")
    parser.add_argument("-c", "--config", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="compile property (repeatable)")
    parser.add_argument("--inputs", metavar="DIR", help="folder of .npy/.npz inputs")
    parser.add_argument("--output", metavar="DIR|FILE.npz", help="folder for one .npz per input, or one .npz")
    parser.add_argument("--no-wait", action="store_true", help="submit and return without following the job")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or job log on stderr")
    parser.add_argument("--logs", metavar="JOB_ID", help="print the log of a submitted job and exit")


def cmd_submit(args: argparse.Namespace) -> int:
    """Run a batch-inference job on a Ray cluster through its job server: every input without an
    output is inferred (a rerun resumes), with a progress bar; Ctrl-C stops the job."""
    from infermux.cluster import jobs

    if args.logs:
        print(jobs.job_logs(args.logs, args.address), end="")
        return EXIT_OK
    if not (args.model and args.inputs and args.output):
        raise CliError("submit needs MODEL, --inputs and --output (or --logs JOB_ID)", EXIT_USAGE)
    config = dict(args.config)
    if args.device == "AUTO":
        config.setdefault("PERFORMANCE_HINT", "CUMULATIVE_THROUGHPUT")
    return jobs.submit(args.model, address=args.address, device=args.device, inputs=args.inputs,
                       output=args.output, config=config, wait=not args.no_wait, quiet=args.quiet)


# -- the command table and main ----------------------------------------------------------------
COMMANDS: tuple[Command, ...] = (
    Command("devices", "list devices with FULL_DEVICE_NAME and key properties", _devices_arguments,
            cmd_devices),
    Command("run", "run one inference and summarize the outputs", _run_arguments, cmd_run),
    Command("bench", "measure latency and throughput (benchmark_app style)", _bench_arguments, cmd_bench),
    Command("example", "quick start: classify digits with the bundled model", _example_arguments,
            cmd_example),
    Command("submit", "batch inference on a Ray cluster (resumable job)", _submit_arguments, cmd_submit),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``infermux`` parser with one subparser per entry of :data:`COMMANDS`."""
    from infermux._version import __version__

    parser = argparse.ArgumentParser(prog="infermux", allow_abbrev=False,
                                     description="infermux: run and benchmark ONNX models.")
    parser.add_argument("--version", action="version", version=f"infermux {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    # The subparsers' own --verbose must not reset one given before the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        doc = (command.run.__doc__ or command.help).strip()
        p = sub.add_parser(command.name, help=command.help, description=doc, parents=[common],
                           allow_abbrev=False)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


@contextlib.contextmanager
def _verbose_logging(enabled: bool) -> Iterator[None]:
    """With ``--verbose``, the library's debug log goes to stderr while the command runs."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("infermux")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _error_message(exc: BaseException) -> tuple[str, bool]:
    """(message, expected): infermux's and the CLI's own errors, and OS errors, are expected."""
    from infermux.errors import InfermuxError

    if isinstance(exc, (InfermuxError, CliError)):
        return str(exc), True
    if isinstance(exc, OSError) and exc.strerror:
        return (f"{exc.strerror}: '{exc.filename}'" if exc.filename else exc.strerror), True
    return f"{type(exc).__name__}: {exc}", False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 runtime error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors (argparse printed them)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    with _verbose_logging(args.verbose):
        try:
            return args.run(args)
        except KeyboardInterrupt:
            _note("infermux: interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message and an exit code
            if args.verbose:
                traceback.print_exc()
            message, expected = _error_message(exc)
            hint = "" if expected or args.verbose else " (--verbose shows the traceback)"
            _note(f"infermux {args.command}: error: {message}{hint}")
            return exc.exit_code if isinstance(exc, CliError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
