"""The rule model: a rule and where rules come from.

rule (the typed rule), yaml_source (YAML with positions), schema (the JSON Schema
of rule files), loader (files and folders of rules), catalog (what TRL logs, metric
aliases) and trainers (which trainer a run uses).
"""
