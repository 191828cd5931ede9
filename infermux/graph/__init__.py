"""The model side: IR, element types, shapes, ONNX reader/writer, shape inference, graph passes."""

from infermux.graph.model import Graph, Model, Node, Output, ValueInfo
from infermux.graph.shape import Dimension, PartialShape, Shape
from infermux.graph.types import Type

__all__ = ["Graph", "Model", "Node", "Output", "ValueInfo", "Dimension", "PartialShape", "Shape", "Type"]
