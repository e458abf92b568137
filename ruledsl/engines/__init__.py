"""The two engines that evaluate compiled rules: batch (polars, whole logs) and live (row by row).

They never import each other: both read ruledsl.compile, ruledsl.alerts and the
language's table of meanings, and tests prove they agree to the bit.
"""
