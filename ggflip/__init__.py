"""ggflip: what quantization really did to a local LLM.

Compares an F16 GGUF with its quantizations question by question: accuracy,
flips (correct->incorrect and incorrect->correct), and the full-vocabulary
KL-divergence of the next-token distributions, driven through llama.cpp.
"""

from __future__ import annotations

__version__ = "0.1.0"
