"""The model exporter (`photopipe models export`): our PyTorch GFPGANv1Clean and its ONNX export.

Needs torch (the `export` extra); never needed at run time and not part of the Lambda layer."""
