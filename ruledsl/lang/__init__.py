"""The language: rule text to a checked syntax tree, nothing else.

errors (values with positions) and codes → ast (typed nodes) → parser (Lark) →
checker (meaning, semantic errors) → read (conditions and inline alerts);
meaning holds what each construct means, templates the messages.
"""
