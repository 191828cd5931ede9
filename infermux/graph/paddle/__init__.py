"""PaddlePaddle inference models (``inference.pdmodel`` + ``.pdiparams``), read without paddlepaddle.

:mod:`.proto` decodes the protobuf ``ProgramDesc``, :mod:`.params` reads the parameter stream,
:mod:`.reader` assembles the graph, with one small translation per Paddle op in the ``ops_*``
family modules (:mod:`.ops` holds the context they see).

>>> from infermux.graph.paddle import read_paddle
>>> model = read_paddle("ch_PP-OCRv4_det_infer")   # a folder or its .pdmodel   # doctest: +SKIP
"""

from infermux.graph.paddle.reader import SUPPORTED_OPS, read_paddle

__all__ = ["SUPPORTED_OPS", "read_paddle"]
