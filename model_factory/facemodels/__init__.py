"""Builders of the bundle's ONNX models from weights that registry packages ship (build time only)."""
