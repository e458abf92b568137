"""A run's configuration (docs/language.md §2): a flat mapping from keys to numbers, booleans and strings.

Rules read it as `config.KEY` and in `when:`. It comes from the trainer's
arguments (`args.to_dict()`, kept by the callback in run.json), from what the log
formats keep (an MLflow run's params, a W&B run's config, the `args` text that
transformers writes to TensorBoard) and from the command line. Whatever the
source, it goes through `normalize`, so that the same run gives the same keys:

- nested mappings are flattened with `.` (`model_init_kwargs.torch_dtype`), lists
  and tuples by index (`report_to.0`), enums by their value;
- a null value counts as a missing key, so it is dropped;
- values that arrive as text (MLflow params, overrides) are read as JSON scalars
  where they parse as one (`"0.1"` → 0.1, `"true"` → True), else kept as strings.

Nothing here loads a pickle or runs code: files are read with `json` and YAML's
safe loader only.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

Scalar = bool | int | float | str
RunConfig = dict[str, Scalar]

SEPARATOR = "."
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# W&B's config.yaml wraps every key as {value: …} (older versions add `desc`), and keeps
# its own bookkeeping under keys starting with `_` (`_wandb`).
WANDB_ENTRY_KEYS = frozenset({"value", "desc"})
WANDB_PRIVATE_PREFIX = "_"


class ConfigError(ValueError):
    """A configuration that cannot be read; the message names the file or the option."""


# ---------------------------------------------------------------- shaping values


def flatten(mapping: Mapping[Any, Any] | list[Any] | tuple[Any, ...], prefix: str = "") -> dict[str, Any]:
    """`mapping` with nested mappings and sequences spread out into dotted keys.

    `{"a": {"b": 1}, "c": [x, y]}` → `{"a.b": 1, "c.0": x, "c.1": y}`. Enums become
    their value, scalars of other libraries (numpy, torch) plain ones, and any other
    object its `str()`: a configuration holds only what a rule can compare. Nulls
    are kept (`normalize` drops them); an empty mapping or list leaves no key.
    """
    return dict(_flat_items(mapping, prefix))


def _flat_items(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Enum):  # before str/int: many enums subclass them (transformers' ExplicitEnum)
        yield from _flat_items(value.value, key)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _flat_items(item, f"{key}{SEPARATOR}{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _flat_items(item, f"{key}{SEPARATOR}{index}" if key else str(index))
    else:
        yield key, _scalar(value)


def _scalar(value: Any) -> Scalar | None:
    """A leaf value as a configuration holds it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # numpy's and torch's scalars (numpy.bool_ included)
    if callable(item):
        try:
            plain = item()
        except Exception:  # not a scalar after all (an array of several values)
            plain = None
        if isinstance(plain, (bool, int, float, str)):
            return plain
    if isinstance(value, numbers.Integral):  # other numbers (Fraction: a Real)
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def from_text(value: Any) -> Any:
    """A value that arrived as text, read as a JSON scalar where it parses as one (docs/language.md §2).

    `"0.1"` → 0.1, `"3"` → 3, `"true"` → True, `"null"` → None, `'"x"'` → "x"; anything
    else (`"sigmoid"`, `"[1, 2]"`, `"nan"`) stays the string it was. Non-text values
    are returned as they are.
    """
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value, parse_constant=_no_constant)
    except ValueError:  # not JSON (JSONDecodeError), or NaN/Infinity, which JSON does not have
        return value
    if parsed is None or isinstance(parsed, (bool, int, float, str)):
        return parsed
    return value  # a list or an object: not a scalar, the text is the value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def normalize(mapping: Mapping[Any, Any], text_values: bool = False) -> RunConfig:
    """A flat configuration from any mapping: flattened, text read as JSON scalars when
    `text_values` (the values came as text), nulls dropped (a null is a missing key)."""
    flat = flatten(mapping)
    if text_values:
        flat = {key: from_text(value) for key, value in flat.items()}
    return {key: value for key, value in flat.items() if value is not None}


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """`base` with `overrides` on top: an override wins, and an override of null removes
    the key (how `--config beta=null` says a run has no `beta`)."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------- files


def read_config_file(path: Path | str) -> RunConfig:
    """A YAML or JSON file of settings (nested or flat; W&B's config.yaml too) as a flat
    configuration, or ConfigError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({_reason(exc)})") from None
    data = _parse(text, path)
    if data is None:  # an empty file: nothing configured
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a configuration file holds a mapping of keys to values, "
                          f"this one holds {_kind(data)}")
    return normalize(unwrap_wandb(data) if is_wandb_config(data) else data)


def _parse(text: str, path: Path) -> Any:
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None


def is_wandb_config(data: Mapping[Any, Any]) -> bool:
    """Whether `data` is in W&B's config.yaml layout: its own `_wandb` key, or every key
    wrapped as {value: …} (with `desc` in older versions)."""
    if "_wandb" in data:
        return True
    entries = [v for k, v in data.items() if not str(k).startswith(WANDB_PRIVATE_PREFIX)]
    return bool(entries) and all(isinstance(v, Mapping) and "value" in v and set(v) <= WANDB_ENTRY_KEYS
                                 for v in entries)


def unwrap_wandb(data: Mapping[Any, Any]) -> dict[str, Any]:
    """W&B's `{key: {desc: …, value: …}}` → `{key: value}`, W&B's own `_…` keys left out.
    An entry that is not wrapped is taken as it is."""
    unwrapped: dict[str, Any] = {}
    for key, entry in data.items():
        if str(key).startswith(WANDB_PRIVATE_PREFIX):
            continue
        is_wrapped = isinstance(entry, Mapping) and "value" in entry and set(entry) <= WANDB_ENTRY_KEYS
        unwrapped[str(key)] = entry["value"] if is_wrapped else entry
    return unwrapped


# ---------------------------------------------------------------- the command line


def parse_override(text: str) -> dict[str, Any]:
    """`KEY=VALUE` from the command line as configuration entries, or ValueError.

    VALUE is read as JSON where it is a JSON scalar (docs/language.md §2: `1e-3`, `true`, `"x"`),
    else typed as a YAML scalar (`yes`, `True`, `~`); a YAML list or mapping
    (`report_to=[wandb]`) is flattened under KEY like a nested value in a file. Null
    (`beta=null`) is kept: `merge` then removes the key. Anything else is the text.
    """
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals:
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. beta=0.1) nor a configuration file")
    if not key:
        raise ValueError(f"{text!r} has no key before '=' (write KEY=VALUE, e.g. beta=0.1)")
    value = _typed(raw)
    if isinstance(value, (Mapping, list, tuple)):
        nested = flatten(value, key)
        return nested or {key: raw.strip()}  # `[]`, `{}`: no entry to spread out, keep the text
    return {key: _scalar(value)}


def _typed(raw: str) -> Any:
    """An override's value: JSON scalar, else YAML's reading, else the text itself."""
    raw = raw.strip()  # `--config "beta = 0.1"` means what `beta=0.1` means
    value = from_text(raw)
    if not isinstance(value, str) or value != raw:
        return value
    try:
        typed = yaml.safe_load(raw)
    except yaml.YAMLError:  # `a: b: c`, an unclosed bracket: not YAML, a plain string
        return raw
    if isinstance(typed, float) and not math.isfinite(typed):
        return raw  # YAML's `.nan`/`.inf`: no configuration needs them; keep what was written
    if typed is None and raw == "":
        return raw  # `KEY=` sets the empty string, it does not remove the key
    if typed is None or isinstance(typed, (bool, int, float, Mapping, list)):
        return typed
    if isinstance(typed, str) and len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return typed  # quoted to stay text: `seed='42'`
    return raw  # a string (`exp #3` keeps its `#`), a YAML date or timestamp: the text as given


def looks_like_config_file(text: str) -> bool:
    """Whether a `--config` value names a file rather than `KEY=VALUE`: an existing file,
    or (without `=`) a name ending in .yaml, .yml or .json."""
    path = Path(text)
    try:
        if path.is_file():
            return True
    except OSError:  # a name too long for the file system: it is no file
        return False
    return "=" not in text and path.suffix.lower() in CONFIG_SUFFIXES


# ---------------------------------------------------------------- words


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:30]!r}"
    return f"the value {str(value)[:30]} ({type(value).__name__})"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
