"""Archive audits inside Spark or Ray: each partition of whole runs audited by the in-process engine.

`audit_spark` (extra `ruledsl[spark]`) and `audit_ray` (extra `ruledsl[ray]`) are imported on first
use: importing ruledsl.distributed imports neither pyspark nor ray. The engine-neutral worker step
both share is `ruledsl.distributed.partition`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["audit_ray", "audit_spark"]

_ENGINES = {"audit_spark": "ruledsl.distributed.spark_engine", "audit_ray": "ruledsl.distributed.ray_engine"}


def __getattr__(name: str) -> Any:
    if name in _ENGINES:
        import importlib

        return getattr(importlib.import_module(_ENGINES[name]), name)
    raise AttributeError(f"module 'ruledsl.distributed' has no attribute {name!r}")
