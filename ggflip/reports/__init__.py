"""Reports for people: terminal tables, Markdown, HTML pages and plots, from a mode's report.

One table-cell module and one Markdown writer serve every front end.
"""
