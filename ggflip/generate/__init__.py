"""Generation mode: greedy generations of the baseline and each quant, compared.

Contract: `engine.run_generation(GenSpec, BackendFactory)` yields events and ends with a
`GenFinished` carrying the `report.GenReport`; flips come from answers extracted from each
model's own greedy text (`extract`), the distances from teacher forcing the quant on the
baseline's text (`compare`). Imports only the layers below the modes.
"""
