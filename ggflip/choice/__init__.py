"""Multiple-choice runs (letter and cloze): the run description, the engine and its scoring loop,
the events it yields, its baseline cache and run store, and the report's schema.

Built on backends, tasks, config, store and scoring; front ends call `engine.run_comparison`.
"""
