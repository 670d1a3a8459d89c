"""`models.toml`: strict parsing into frozen dataclasses, text patching, sets made from
--baseline/--quant, `hf://` resolution and the embedded demo set.

Errors name the file, the table and the key.
"""
