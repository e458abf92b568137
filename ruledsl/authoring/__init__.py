"""Tools for rule authors: rule tests run on both engines, scaffolding new rules,
and explaining what a rule means.
"""
