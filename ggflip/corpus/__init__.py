"""Corpus runs (`ggflip kld`): llama-perplexity's chunking and KLD statistics over a text,
its compact baseline cache, events and report schema.

Built on backends, config, store and scoring; front ends call `engine.run_kld`.
"""
