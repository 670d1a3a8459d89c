"""The `ggflip` command: one module per subcommand, shared flags defined once.

stdout is data (`--json`: one document); progress, warnings and llama.cpp logs go to stderr.
"""
