"""Model caching: the compiled-model blob, its cache folder, and compile-through-the-cache.

A *blob* is what ``CompiledModel.export_model()`` writes and ``Core.import_model`` and the
``CACHE_DIR`` cache read: the model as the plugin's compile passes left it (functions expanded,
constants and BatchNormalization folded, dead code removed), so that importing skips them.  The
format holds no pickle and no code: only JSON, ONNX protobuf and raw little-endian arrays.

Blob layout (all integers little-endian)::

    offset  size  field
    0       8     magic b"INFERMUX"
    8       4     format version (u32, currently 1)
    12      4     flags (u32, 0)
    16      8     meta_len: bytes of the JSON metadata (u64)
    24      8     graph_len: bytes of the ONNX graph (u64)
    32      8     weights_offset: where the weights start, a multiple of 64 (u64)
    40      8     weights_len (u64); the blob is exactly weights_offset + weights_len bytes
    48      4     reserved (u32, 0)
    52      4     checksum: CRC-32 (zlib) of bytes [0, 52) followed by bytes [56, end) (u32)
    56      meta_len   metadata, UTF-8 JSON: {"format", "infermux" (version), "plugin" (device
                       type that exported it), "name" (model name), "properties" (the caching
                       properties it was compiled with), "byteorder", "node_opsets" ([[i, opset]]
                       for nodes that carry their own opset, i counting nodes depth-first through
                       subgraphs), "weights": [{"name", "dtype", "shape", and either "offset" and
                       "nbytes" (relative to weights_offset) or "splat" (hex bytes of the one
                       value every element has)}]}
    56+meta_len  graph_len  ONNX ModelProto: the optimised graph, opsets, value_info; string
                       weights stay inside it, numeric top-level weights are left out
    ...     zero padding up to weights_offset
    weights_offset  weights_len  each numeric weight's raw bytes, C order, each 64-byte aligned

Reading checks the magic, the version, the exact length (truncation) and the checksum before it
parses anything; any failure is a :class:`BlobError`.  The cache treats that as a miss: it logs a
warning, compiles, and rewrites the file (atomically: write a temporary file, then rename).
CRC-32 is there to catch damage (a truncated write, a flipped bit: every burst of up to 32 bits
is caught, anything else with probability 1 - 2**-32), at twice the speed of SHA-256 on a
100 MB blob; it is not a signature, so a cache folder deserves the trust of the model files.

With ``ENABLE_MMAP`` (the default, as in OpenVINO) a cache file is memory-mapped to check and
parse it, and its weight section is then copied once into process memory: cheaper than
``read()`` (on a 100 MB blob, map + CRC + copy took 42 ms against 74 ms for read + CRC), and
nothing a running model uses stays backed by the file, so a cache file rewritten or truncated
later can neither change nor crash it.  ``ENABLE_MMAP=False`` reads blobs with ``read()``.

The cache key is the SHA-256 of: the model's content digest (the file's bytes, with its external
data and weight files, when compiled from a path; the graph, weights and names when compiled from
a ``Model``, so the two give different keys, as OpenVINO's do), the device type, the values of the
device's ``CACHING_PROPERTIES``, the infermux version and the blob format version.

>>> import infermux as im
>>> core = im.Core()
>>> core.set_property({"CACHE_DIR": "/tmp/infermux-cache"})                 # doctest: +SKIP
>>> core.compile_model("model.onnx", "CPU").get_property("LOADED_FROM_CACHE")  # doctest: +SKIP
False
>>> core.compile_model("model.onnx", "CPU").get_property("LOADED_FROM_CACHE")  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import mmap
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from infermux._version import __version__
from infermux.errors import InfermuxError
from infermux.graph.model import Graph, Model

__all__ = [
    "FORMAT_VERSION",
    "Blob",
    "BlobError",
    "ModelCache",
    "cache_key",
    "compile_cached",
    "file_digest",
    "model_digest",
    "read_blob",
    "supports_caching",
    "write_blob",
]

log = logging.getLogger(__name__)

MAGIC = b"INFERMUX"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQQQQII")  # 56 bytes
HEADER_SIZE = _HEADER.size
_CHECKSUMMED_HEADER = 52  # the header bytes before the checksum
_ALIGN = 64
_SPLAT_MIN_ELEMENTS = 64


class BlobError(InfermuxError, ValueError):
    """A blob that is truncated, corrupt (checksum), of another format version, or another
    device's."""


@dataclasses.dataclass(frozen=True)
class Blob:
    """A parsed blob: the optimised model, the plugin that wrote it, its caching properties."""

    model: Model
    plugin: str
    properties: dict[str, str]
    meta: dict[str, Any]


# -- writing ---------------------------------------------------------------------------------
def write_blob(model: Model, plugin: str, properties: Mapping[str, Any] | None = None, *,
               value_info: bool = True) -> bytearray:
    """The blob of an optimised ``model`` exported by ``plugin`` (see the module docstring).

    ``value_info=False`` leaves out the intermediate tensors' types and shapes, which a plugin
    that does not read them after compiling can skip parsing on import."""
    from infermux.graph.onnx_writer import to_onnx

    graph = model.graph
    raw = {n: a for n, a in graph.initializers.items() if _dtype_name(a.dtype) is not None}
    kept = {n: a for n, a in graph.initializers.items() if n not in raw}
    entries, arrays, weights_len = [], [], 0
    for name, arr in raw.items():
        entry: dict[str, Any] = {"name": name, "dtype": _dtype_name(arr.dtype), "shape": list(arr.shape)}
        splat = _splat(arr)
        if splat is not None:
            entry["splat"] = splat
        else:
            weights_len = _aligned(weights_len)
            entry["offset"], entry["nbytes"] = weights_len, int(arr.nbytes)
            arrays.append((weights_len, arr))
            weights_len += arr.nbytes
        entries.append(entry)
    slim = Model(dataclasses.replace(graph, initializers=kept,
                                     value_info=graph.value_info if value_info else {}), model.opsets,
                 name=model.friendly_name, ir_version=model.ir_version, producer="infermux")
    graph_bytes = to_onnx(slim).SerializeToString()
    meta = {"format": FORMAT_VERSION, "infermux": __version__, "plugin": plugin,
            "name": model.friendly_name, "byteorder": sys.byteorder,
            "properties": {k: str(v) for k, v in (properties or {}).items()},
            "node_opsets": [[i, n.rt_info["opset"]] for i, n in enumerate(_walk(graph))
                            if "opset" in n.rt_info],
            "weights": entries}
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    weights_offset = _aligned(_HEADER.size + len(meta_bytes) + len(graph_bytes))
    blob = bytearray(weights_offset + weights_len)
    view = memoryview(blob)
    start = _HEADER.size
    view[start:start + len(meta_bytes)] = meta_bytes
    start += len(meta_bytes)
    view[start:start + len(graph_bytes)] = graph_bytes
    for offset, arr in arrays:
        begin = weights_offset + offset
        view[begin:begin + arr.nbytes] = _bytes_view(arr)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(meta_bytes), len(graph_bytes),
                          weights_offset, weights_len, 0, 0)
    view[:_HEADER.size] = header
    struct.pack_into("<I", view, _CHECKSUMMED_HEADER, _checksum(view))
    return blob


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _bytes_view(arr: np.ndarray) -> np.ndarray:
    """The array's bytes as a flat uint8 array (no copy when already C-contiguous)."""
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


def _splat(arr: np.ndarray) -> str | None:
    """The hex bytes of the value every element has, or None.  Compared bitwise (-0.0 != 0.0)."""
    if arr.size < _SPLAT_MIN_ELEMENTS or arr.dtype.itemsize not in (1, 2, 4, 8):
        return None
    flat = np.ascontiguousarray(arr).reshape(-1).view(f"u{arr.dtype.itemsize}")
    if flat[0] != flat[-1] or not (flat == flat[0]).all():
        return None
    return _bytes_view(arr.reshape(-1)[:1]).tobytes().hex()


def _dtype_name(dtype: np.dtype) -> str | None:
    """A name :func:`_dtype_from_name` turns back into ``dtype``; None for strings/objects."""
    from infermux.ops._dtypes import ONNX_TO_NUMPY

    if dtype.kind in "OUS" or dtype not in ONNX_TO_NUMPY.values():
        return None
    return dtype.name


@functools.cache
def _dtype_from_name(name: str) -> np.dtype:
    from infermux.ops._dtypes import ONNX_TO_NUMPY

    for dtype in ONNX_TO_NUMPY.values():
        if dtype.name == name and dtype.kind not in "OUS":
            return dtype
    raise BlobError(f"the blob stores a weight of type '{name}', which this infermux cannot hold")


def _walk(graph: Graph):
    """Every node, depth first through subgraphs, in the order the ONNX writer keeps."""
    for node in graph.nodes:
        yield node
        for value in node.attrs.values():
            subs = [value] if isinstance(value, Graph) else (
                [v for v in value if isinstance(v, Graph)] if isinstance(value, list) else [])
            for sub in subs:
                yield from _walk(sub)


def _checksum(view: memoryview) -> int:
    return zlib.crc32(view[_HEADER.size:], zlib.crc32(view[:_CHECKSUMMED_HEADER]))


# -- reading ---------------------------------------------------------------------------------
def read_blob(data: bytes | bytearray | memoryview, *, plugin: str | None = None) -> Blob:
    """Parse and verify a blob; ``plugin`` names the device type that must have written it.

    Weights are views into ``data`` (no copy; pass a ``bytearray`` for writable weights), except
    from a memory-mapped file, whose weight section is copied once into process memory."""
    view = memoryview(data).cast("B")
    meta = _verified_meta(view)
    if meta.get("byteorder") != sys.byteorder:
        raise BlobError(f"the blob was written on a {meta.get('byteorder')}-endian machine; "
                        f"export it again on this one")
    if plugin is not None and meta.get("plugin") != plugin:
        raise BlobError(f"the blob was exported from the {meta.get('plugin')} device; import it on "
                        f"{meta.get('plugin')}, not {plugin} (or compile the model for {plugin})")
    _, _, _, meta_len, graph_len, weights_offset, _, _, _ = _HEADER.unpack_from(view)
    start = _HEADER.size + meta_len
    model = _model_from_graph_bytes(view[start:start + graph_len], meta)
    weights = view[weights_offset:]
    if isinstance(data, mmap.mmap):  # own the weights: a file changed later cannot touch them
        weights = memoryview(np.frombuffer(weights, dtype=np.uint8).copy())
    for entry in meta["weights"]:
        model.graph.initializers[entry["name"]] = _weight(entry, weights)
    if meta.get("infermux") != __version__:
        log.debug("blob from infermux %s read by %s", meta.get("infermux"), __version__)
    return Blob(model, str(meta.get("plugin")), dict(meta.get("properties", {})), meta)


def _verified_meta(view: memoryview) -> dict[str, Any]:
    if len(view) < _HEADER.size:
        raise BlobError(f"the blob is truncated: {len(view)} bytes, the header alone needs {_HEADER.size}")
    magic, version, _, meta_len, graph_len, weights_offset, weights_len, _, crc = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise BlobError("not an infermux blob (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise BlobError(f"the blob has format version {version}; this infermux reads version "
                        f"{FORMAT_VERSION}: export or cache it again")
    expected = weights_offset + weights_len
    if _HEADER.size + meta_len + graph_len > weights_offset or len(view) != expected:
        raise BlobError(f"the blob is truncated or has extra bytes: {len(view)} bytes, its header "
                        f"says {expected}")
    if _checksum(view) != crc:
        raise BlobError("the blob is corrupt: its CRC-32 checksum does not match its contents")
    try:
        meta = json.loads(bytes(view[_HEADER.size:_HEADER.size + meta_len]).decode("utf-8"))
    except ValueError as exc:
        raise BlobError(f"the blob's metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("weights"), list):
        raise BlobError("the blob's metadata lacks its weight table")
    return meta


def _model_from_graph_bytes(graph_bytes: memoryview, meta: dict[str, Any]) -> Model:
    import onnx

    from infermux.graph.onnx_reader import graph_from_proto

    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(bytes(graph_bytes))
        graph = graph_from_proto(proto.graph)
    except Exception as exc:  # noqa: BLE001 - a malformed graph is a malformed blob
        raise BlobError(f"the blob's graph cannot be read: {exc}") from None
    nodes = list(_walk(graph))
    for index, opset in meta.get("node_opsets", []):
        nodes[index].rt_info["opset"] = opset
    opsets = {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in proto.opset_import}
    return Model(graph, opsets, name=meta.get("name") or graph.name, ir_version=proto.ir_version,
                 producer=proto.producer_name)


def _weight(entry: dict[str, Any], weights: memoryview) -> np.ndarray:
    dtype = _dtype_from_name(entry["dtype"])
    shape = tuple(int(d) for d in entry["shape"])
    if "splat" in entry:
        value = np.frombuffer(bytes.fromhex(entry["splat"]), dtype=dtype)
        return np.full(shape, value[0], dtype=dtype)
    offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
    if offset + nbytes > len(weights) or nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise BlobError(f"weight '{entry['name']}' does not fit the blob's weight section")
    return np.frombuffer(weights[offset:offset + nbytes], dtype=dtype).reshape(shape)


# -- keys ------------------------------------------------------------------------------------
def _feed(h, *values: Any) -> None:
    h.update(json.dumps(values, default=str, separators=(",", ":")).encode("utf-8"))
    h.update(b"\0")


def model_digest(model: Model) -> str:
    """A content digest of a ``Model``: name, opsets, graph structure, attributes and weights."""
    h = hashlib.sha256(b"model\0")
    _feed(h, model.friendly_name, sorted(model.opsets.items()))
    _hash_graph(h, model.graph)
    return h.hexdigest()


def _hash_graph(h, graph: Graph) -> None:
    for vi in list(graph.inputs) + list(graph.outputs):
        _feed(h, vi.name, getattr(vi.element_type, "name", str(vi.element_type)), str(vi.shape), vi.kind)
    for name in sorted(graph.initializers):
        _hash_value(h, name, graph.initializers[name])
    for node in graph.nodes:
        _feed(h, node.name, node.op_type, node.domain, node.inputs, node.outputs,
              node.rt_info.get("opset"))
        for key in sorted(node.attrs):
            _hash_value(h, key, node.attrs[key])


def _hash_value(h, name: str, value: Any) -> None:
    if isinstance(value, Graph):
        _feed(h, name, "graph")
        _hash_graph(h, value)
    elif isinstance(value, np.ndarray):
        _feed(h, name, str(value.dtype), value.shape)
        if value.dtype == object:
            _feed(h, value.ravel().tolist())
        else:
            h.update(_bytes_view(value))
    elif isinstance(value, list) and any(isinstance(v, (Graph, np.ndarray)) for v in value):
        for i, v in enumerate(value):
            _hash_value(h, f"{name}[{i}]", v)
    else:
        _feed(h, name, value)


# files whose weights live beside them: the model file suffix -> the weight file suffixes
_COMPANIONS = {".xml": (".bin",), ".pdmodel": (".pdiparams",)}


def file_digest(path: str | os.PathLike) -> str:
    """A content digest of a model file, with the weight files it reads (ONNX external data,
    IR ``.bin``, Paddle ``.pdiparams``).

    Files are mapped, not copied, to hash them.  As git's index does, the digest is remembered
    for the process, keyed by each file's (device, inode, size, mtime, ctime), so hashing an
    unchanged file again is skipped; files changed in the last :data:`_RACY_S` seconds are not
    remembered (a change within the same timestamp tick could go unseen)."""
    path = Path(path).resolve()
    known = _DIGESTS.get(path)
    if known is not None and all(_stat_signature(f) == sig for f, sig in known[1]):
        return known[0]
    before = _stat_signature(path)
    h = hashlib.sha256(b"file\0")
    data = _read_file(path, use_mmap=True)
    h.update(data)
    extra = [path.with_suffix(s) for s in _COMPANIONS.get(path.suffix.lower(), ())]
    if path.suffix.lower() == ".onnx" and data.find(b"location") >= 0:
        extra += _external_data_files(path)
    signatures = [(path, before)]
    for f in extra:
        _feed(h, f.name)
        signatures.append((f, _stat_signature(f)))
        h.update(_read_file(f, use_mmap=True) if f.is_file() else b"<missing>")
    digest = h.hexdigest()
    settled = time.time() - _RACY_S
    if all(sig is None or max(sig[-2:]) < settled * 1e9 for _, sig in signatures) and \
            all(_stat_signature(f) == sig for f, sig in signatures):
        with _DIGESTS_LOCK:
            _DIGESTS[path] = (digest, signatures)
            while len(_DIGESTS) > _MAX_DIGESTS:
                _DIGESTS.pop(next(iter(_DIGESTS)))
    return digest


_DIGESTS: dict[Path, tuple[str, list]] = {}
_DIGESTS_LOCK = threading.Lock()
_MAX_DIGESTS = 256
_RACY_S = 2.0


def _stat_signature(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_file(path: Path, use_mmap: bool) -> mmap.mmap | bytearray:
    """A file's bytes, writable: a private (copy-on-write) mapping, or a buffer for small or
    empty files and when ``use_mmap`` is off."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if use_mmap and size >= mmap.PAGESIZE:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        data = bytearray(size)
        read = f.readinto(data)
    return data if read == size else data[:read]


def _external_data_files(path: Path) -> list[Path]:
    import onnx

    from infermux.graph.onnx_reader import _tensors

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - read_model will report it
        return []
    names = set()
    for tensor in _tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return [path.parent / n for n in sorted(names)]


def cache_key(source_digest: str, device: str, properties: Mapping[str, Any]) -> str:
    """The cache file stem for a model digest compiled on ``device`` with ``properties``."""
    doc = {"source": source_digest, "device": device, "infermux": __version__,
           "format": FORMAT_VERSION, "properties": {k: str(v) for k, v in sorted(properties.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


# -- the cache folder ------------------------------------------------------------------------
class ModelCache:
    """A folder of ``<key>.blob`` files (``CACHE_DIR``).  Files are written atomically (a
    temporary file, then a rename); with ``use_mmap`` they are read by mapping them."""

    def __init__(self, folder: str | os.PathLike, *, use_mmap: bool = True):
        self.folder = Path(folder)
        self.use_mmap = use_mmap

    def path(self, key: str) -> Path:
        """Where the blob of ``key`` lives."""
        return self.folder / f"{key}.blob"

    def load(self, key: str) -> mmap.mmap | bytearray | None:
        """The blob's bytes, writable (a private mapping or a buffer), or None when absent."""
        path = self.path(key)
        try:
            return _read_file(path, self.use_mmap)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cannot read the cache file %s (%s); compiling instead", path, exc)
            return None

    def store(self, key: str, blob: bytes | bytearray | memoryview) -> None:
        """Write the blob (temporary file + rename, so readers never see half a file)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, self.path(key))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write the cache file %s (%s); the model is compiled but not cached",
                        self.path(key), exc)


# -- compiling through the cache -------------------------------------------------------------
def supports_caching(plugin: Any, device_id: str = "") -> bool:
    """True when the device can export and import compiled models (``EXPORT_IMPORT``)."""
    if not hasattr(plugin, "import_model"):
        return False
    try:
        return "EXPORT_IMPORT" in plugin.get_property("OPTIMIZATION_CAPABILITIES", device_id)
    except Exception:  # noqa: BLE001 - a device that cannot say does not cache
        return False


def caching_properties(plugin: Any, config: Mapping[str, Any] | None, device_id: str = "") -> dict[str, Any]:
    """The values of the device's ``CACHING_PROPERTIES`` for a compile with ``config``."""
    try:
        keys = list(plugin.get_property("CACHING_PROPERTIES", device_id))
    except Exception:  # noqa: BLE001 - no such key: nothing but the device type matters
        keys = []
    table = getattr(plugin, "properties", None)
    if table is not None and hasattr(table, "resolve"):
        resolved, _ = table.resolve(config, device_id)
    else:
        resolved = dict(config or {})
    return {k: resolved[k] if k in resolved else plugin.get_property(k, device_id) for k in keys}


def compile_cached(plugin: Any, device_id: str, config: Mapping[str, Any] | None,
                   cache: ModelCache, *, model: Model | None = None,
                   path: str | os.PathLike | None = None,
                   read_model: Callable[[Any], Model] | None = None) -> Any:
    """Compile ``model`` (or the model at ``path``) on ``plugin`` through ``cache``.

    A hit imports the blob (compiling from a path then skips reading the model); a corrupt blob
    is logged, ignored and rewritten; a miss compiles and stores the blob."""
    digest = file_digest(path) if model is None else model_digest(model)
    key = cache_key(digest, plugin.name, caching_properties(plugin, config, device_id))
    data = cache.load(key)
    if data is not None:
        try:
            return plugin.import_model(data, config, device_id)
        except Exception as exc:  # noqa: BLE001 - a bad cache entry must never fail the compile
            log.warning("ignoring the cache file %s: %s; compiling the model and rewriting it",
                        cache.path(key), exc)
    if model is None:
        model = read_model(path)
    compiled = plugin.compile_model(model, config, device_id)
    try:
        blob = compiled.export_model()
    except Exception as exc:  # noqa: BLE001 - compiled fine; only caching is lost
        log.warning("cannot export %s from %s for the cache: %s", model.friendly_name, plugin.name, exc)
        return compiled
    cache.store(key, blob)
    return compiled
