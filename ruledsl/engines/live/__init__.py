"""The live engine: rules evaluated row by row as a run logs them (monitor), with
each key's recent values (series), alias choice (aliases), the keys a metric
pattern runs on (patterns), compiled conditions (shorthand, expression), one
rule's state machine (runner) and what it reports (events).
"""
