"""ONNX frontend: ``import_onnx(path) -> Graph``."""

from nfc.frontends.onnx._importer import MAX_OPSET, MIN_OPSET, SUPPORTED_OPS, import_onnx, load_model

__all__ = ["import_onnx", "load_model", "MIN_OPSET", "MAX_OPSET", "SUPPORTED_OPS"]
