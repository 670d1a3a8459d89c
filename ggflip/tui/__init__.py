"""The Textual terminal UI; the only part of ggflip that imports `textual`.

`ggflip` (on a terminal) or `ggflip tui` opens it; `command.tui_command` is the entry point.
"""
