"""`models.toml`: strict parsing into frozen dataclasses, text patching, sets made from
--baseline/--quant and `hf://` resolution.

Errors name the file, the table and the key.
"""
