"""What a logged value and a logged step mean to the live engine: the readings the batch
readers give the same line of a JSON log (ruledsl/readers/common.py: `number`,
`training_step`), so that a row fed live and the same row written to metrics.jsonl and
audited later mean the same thing (docs/language.md §2).

A **value** is a number: an int or float, or anything else float() takes that is one
number (a numpy scalar, a 0-d tensor, a Decimal, a Fraction), NaN and ±inf included; a
number past any float (10**400) is ±inf, as the same number written with an exponent is;
the texts "nan", "inf", "-inf" (any case, "infinity" too) are those non-finite numbers.
None is the JSON null: the key is absent at that row. Everything else is **no value**:
booleans (a flag is no metric), other texts ("0.5" included: a log writes numbers as
numbers), complex numbers, lists, mappings, arrays and tensors that are not 0-d (one
number in a list is still a list), and objects whose float() fails. No value is skipped for that key and row, and said.

A **step** is what the readers take as a training step: a whole number within
[-2**63, 2**63) (the batch engine keeps steps as 64-bit integers), a finite float or a
text holding a number being cut to its whole part, as polars' cast does. Anything else
names no training step: the row is skipped, and said.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

NON_FINITE_TEXTS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
                    "-infinity": -math.inf}
STEP_LIMIT = 2**63
TEXT_TYPES = (str, bytes, bytearray, memoryview)
BOOLEAN_DTYPES = frozenset({"bool", "torch.bool"})  # numpy's and torch's booleans: float() takes them


def metric_value(raw: Any) -> float | None:
    """The number a logged value holds, or None: null, or no value (see `why_no_value`)."""
    if type(raw) is float:  # nearly every value a Trainer logs
        return raw
    return _read_value(raw)[0]


def why_no_value(raw: Any) -> str | None:
    """Why `raw` is no value, in a few words for a note; None when it is a number or null."""
    if type(raw) is float or raw is None:
        return None
    return _read_value(raw)[1]


def _read_value(raw: Any) -> tuple[float | None, str | None]:
    """(the number, None), (None, None) for null, or (None, why it is no value)."""
    if raw is None:
        return None, None
    try:
        return _classify(raw)
    except Exception:  # an odd object whose attributes raise: no value, whatever it is
        return None, _kind(raw)


def _classify(raw: Any) -> tuple[float | None, str | None]:
    if _is_boolean(raw):
        return None, "a boolean"
    if isinstance(raw, int):
        return _whole(raw), None
    if isinstance(raw, str):
        found = NON_FINITE_TEXTS.get(raw.strip().lower())
        return (found, None) if found is not None else (None, "a text")
    if isinstance(raw, TEXT_TYPES) or getattr(getattr(raw, "dtype", None), "kind", None) in ("U", "S"):
        return None, "a text"  # bytes, or a numpy array of text, which float() would parse
    if isinstance(raw, numbers.Complex) and not isinstance(raw, numbers.Real):
        return None, "a complex number"  # numpy's float() would drop the imaginary part without a word
    if getattr(raw, "ndim", 0) != 0:
        return None, f"{_kind(raw)} of {_size(raw)}"  # an array or tensor: several numbers, or one in a list
    return _float_of(raw)


def _is_boolean(raw: Any) -> bool:
    return isinstance(raw, bool) or str(getattr(raw, "dtype", "")) in BOOLEAN_DTYPES


def _whole(raw: int) -> float:
    """An integer as a float: past any float, ±inf (as the readers read 10**400)."""
    try:
        return float(raw)
    except OverflowError:
        return math.inf if raw > 0 else -math.inf


def _float_of(raw: Any) -> tuple[float | None, str | None]:
    """float(raw) for a number of another type; what went wrong otherwise."""
    try:
        return float(raw), None
    except OverflowError:  # a Fraction past any float
        if isinstance(raw, numbers.Rational):
            return (math.inf if int(raw.numerator) > 0 else -math.inf), None  # its denominator is positive
        return None, f"{_kind(raw)} past any float"
    except (TypeError, ValueError) as exc:
        if not hasattr(raw, "__float__") and not hasattr(raw, "__index__"):
            return None, _kind(raw)
        return None, f"{_kind(raw)} whose float() raised {type(exc).__name__}"
    except Exception as exc:  # a value's own float() may raise anything (a tensor on a lost device)
        return None, f"{_kind(raw)} whose float() raised {type(exc).__name__}"


def _kind(raw: Any) -> str:
    return f"a value of type {type(raw).__name__}"


def _size(raw: Any) -> str:
    try:
        return f"shape {tuple(raw.shape)}"
    except Exception:  # no shape after all
        return "more than one number"


def training_step(raw: Any) -> int | None:
    """The training step a logged step names, or None when it names none (see the module)."""
    if type(raw) is int:  # the Trainer's global_step
        return raw if -STEP_LIMIT <= raw < STEP_LIMIT else None
    return read_step(raw)[0]


def read_step(raw: Any) -> tuple[int | None, bool]:
    """(the training step, whether it was cut from a fraction), or (None, False) for none."""
    try:
        whole, cut = _whole_step(raw)
    except Exception:  # whatever an odd object's conversions raise: it names no step
        return None, False
    if whole is None or not -STEP_LIMIT <= whole < STEP_LIMIT:
        return None, False
    return whole, cut


def _whole_step(raw: Any) -> tuple[int | None, bool]:
    if raw is None or _is_boolean(raw):
        return None, False
    if isinstance(raw, str):  # as the readers: an integer's digits, else a float's
        text = raw.strip()
        try:
            return int(text), False
        except ValueError:  # not an integer's digits (or more than Python converts)
            try:
                raw = float(text)
            except ValueError:
                return None, False
    if isinstance(raw, numbers.Integral):
        return int(raw), False
    value = metric_value(raw)
    if value is None or not math.isfinite(value):
        return None, False
    return int(value), not value.is_integer()


class OnceEach:
    """Notes said once per subject (a key), for the first `limit` subjects, the last of them
    saying that later ones go unsaid: a run logging a new odd key at every step cannot flood
    the console. `say` takes each note's text."""

    def __init__(self, say: Callable[[str], None], limit: int = 10):
        self.say, self.limit = say, limit
        self.noted: set[Any] = set()

    def note(self, subject: Any, text: str) -> None:
        if subject in self.noted or len(self.noted) >= self.limit:
            return
        self.noted.add(subject)
        if len(self.noted) == self.limit:
            text += f"; {self.limit} keys said so, later ones go unsaid"
        self.say(text)


def shown(raw: Any, width: int = 40) -> str:
    """`raw` for a note: its repr, cut to `width` characters (whatever its repr does: raise,
    or run to a 4,000-digit integer, which Python refuses to write)."""
    try:
        text = repr(raw)
    except Exception:  # an odd object's repr, or an integer of more digits than Python writes
        return f"a value of type {type(raw).__name__}"
    return text if len(text) <= width else text[:width - 1] + "…"
