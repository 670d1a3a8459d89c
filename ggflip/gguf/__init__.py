"""GGUF files without llama.cpp's loader: header parsing and checks, dequantize and quantize,
importance matrices and `hf://` references.

Depends only on errors, store and the `gguf`/llama.cpp libraries.
"""
