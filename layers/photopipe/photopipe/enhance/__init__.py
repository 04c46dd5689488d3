"""Face restoration and upscaling (GFPGAN through ONNX Runtime).

Modules import their heavy dependencies themselves: `arch` and `export` need torch (the `export` extra,
never needed at run time); `manifest` and `session` need only numpy and onnxruntime.
"""
