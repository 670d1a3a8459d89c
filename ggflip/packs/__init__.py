"""Baseline packs: a mode's baseline record as one portable, checksummed file, and runs from one.

Compute a baseline once where the F16 fits (`ggflip baseline export`), publish the file (the
Hugging Face hub takes it as is), and compare quants anywhere (`--baseline-pack PACK`): the
baseline model is never opened. `archive` is the file format (`write_pack`, `read_pack`),
`baseline` the baseline's facts in the manifest and the `PackFactory` that serves them, and
`choice`, `corpus`, `generate` each mode's manifest, export and run (`docs/baseline-packs.md`).
"""
