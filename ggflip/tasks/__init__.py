"""Tasks as data: the registry, where rows come from, how a row becomes a question, prompts and
few-shot examples.

A task is declared, not coded; nothing here loads a model.
"""
