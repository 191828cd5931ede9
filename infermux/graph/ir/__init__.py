"""OpenVINO IR (``.xml`` + ``.bin``): a reader (IR v10/v11 to ONNX ops) and a writer (IR v11).

The reader goes file format (:mod:`.parse`: untrusted XML and weights into layer records), then
graph assembly (:mod:`.reader`), with one small translation per layer type in the ``layers_*``
family modules (:mod:`.layers` holds the context they see).  The writer (:mod:`.writer`) mirrors
it, with its translations per ONNX op in the ``writer_ops_*`` modules.

>>> from infermux.graph.ir import read_ir, save_ir
>>> model = read_ir("face_detection.xml")            # doctest: +SKIP
>>> save_ir(model, "copy.xml")                       # doctest: +SKIP
"""

from infermux.graph.ir.parse import IR_ELEMENT_TYPES
from infermux.graph.ir.reader import SUPPORTED_LAYERS, read_ir
from infermux.graph.ir.writer import SUPPORTED_ONNX_OPS, save_ir, to_ir

__all__ = ["IR_ELEMENT_TYPES", "SUPPORTED_LAYERS", "SUPPORTED_ONNX_OPS", "read_ir", "save_ir", "to_ir"]
