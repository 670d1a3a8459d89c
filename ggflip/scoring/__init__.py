"""The numpy kernels every mode shares: log-softmax, the compact top-K/tail record and its KL,
intervals, statistical tests and the metric registry.

Pure functions of arrays: nothing here knows about models, files or tasks.
"""
