"""Every diagnostic code ruledsl can report, with what it means and how to fix it.

One table, so the linter's `--list-codes`, the SARIF rule descriptions and
docs/lint.md say the same thing; a test checks that every code used anywhere in
the package is listed here. Codes are stable: a code's meaning never changes.

E0xx rule files, E1xx conditions, E2xx message templates, E3xx rule fields
(the Python API), E4xx rule tests, Wxxx lint warnings (errors with `--strict`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    title: str
    explanation: str

    @property
    def severity(self) -> str:
        return "warning" if self.code.startswith("W") else "error"


_TABLE = [
    Code("E001", "unreadable file", "The rule file cannot be read: missing, not UTF-8, not a regular file (a "
         "directory, a FIFO, a device: never opened, they could block or never end), or larger than 1 MiB."),
    Code("E002", "invalid YAML", "The file is not YAML that ruledsl accepts: a syntax error, several documents in "
         "one file, a tag such as `!!python/object` (rule files are data; nothing in them is executed), an anchor "
         "(`&a`) or alias (`*a`) (a few aliases can expand a small file into gigabytes), a line longer than "
         "65,536 characters, or a value nested more than 64 levels deep."),
    Code("E003", "duplicate rule name", "Two rules share a `name`; names must be unique across the rule set "
         "that is loaded together (including the builtin library unless `--no-builtin`)."),
    Code("E004", "duplicate key", "A key appears twice in one mapping. YAML keeps only the last value, so the "
         "first one would be lost without a word."),
    Code("E010", "schema violation", "The file does not match schemas/rule.schema.json: a required field is "
         "missing, a field is unknown (extension keys start with `x-`), or a value has the wrong type or range."),
    Code("E020", "unknown trainer", "A trainer id (in `trainers` or an inline alert's prefix) is not one TRL "
         "has (docs/language.md §8): the rule would never run for the trainer you meant. Use TRL's module name "
         "(`grpo`, `dpo`, `sft`, …) or `all`."),
    Code("E101", "condition syntax", "The condition cannot be read at this place: the message names what was "
         "expected and what was found."),
    Code("E102", "unknown function", "A function that the language does not have; the known ones are "
         "mean, min, max, std, sum, delta, baseline, abs."),
    Code("E103", "wrong operand", "A value where a comparison is needed (`loss` alone), a comparison where a "
         "value is needed, or a function argument of the wrong kind."),
    Code("E104", "bad window or count", "A window, lag, `delta` distance, `absent(N)` or `for N steps` that is "
         "not a whole number in range (windows and lags up to 100,000 values, steps up to 10^12)."),
    Code("E105", "bad number", "A number that does not fit its place: `range(a, b)` with a > b, a percentage "
         "outside drop()/rise(), a multiplier outside spike(), a non-positive percentage or factor, a negative "
         "flat() tolerance, or a number too large."),
    Code("E106", "too deeply nested", "The condition nests deeper than 64 levels: each `not`, unary minus, "
         "function call, comparison and and/or inside another counts one, and so does each operator of a chain "
         "(`a + b + c` is `(a + b) + c`: two levels); parentheses alone count nothing. Split it into several "
         "rules, or use sum() or mean() of a window."),
    Code("E107", "too long", "The text is longer than the limit (4096 characters)."),
    Code("E108", "mixed styles", "A shorthand (`< 0.5`, `drop(50%)`) mixed with comparisons that name metrics, "
         "or a shorthand written after a metric name in a rule file (give the metric in `metric:`)."),
    Code("E109", "term combined", "`nonfinite` and `absent(N)` stand alone; they cannot be combined with "
         "`and`/`or`/`not`."),
    Code("E110", "no metric", "A full expression that names no metric (`step > 100` alone): it would never be "
         "evaluated."),
    Code("E111", "type mismatch", "A boolean or text literal (`true`, `'sigmoid'`) used with <, <=, >, >= or in "
         "arithmetic: literals are compared with == and != only."),
    Code("E112", "when reads the log", "A rule's `when` names a metric, `step`, a function, a shorthand or "
         "`for N steps`: it holds only comparisons of `config.KEY` with literals."),
    Code("E113", "pattern out of place", "A metric pattern (`rewards/*/std`) anywhere but a shorthand rule's "
         "`metric` (or the metric an inline alert starts with), or with `**`."),
    Code("E201", "bad template", "The message template has an unknown field, a bad format spec, or braces "
         "that do not pair. Fields: value, metric, step, run, name, severity, trainer, window, threshold, "
         "baseline; specs: the numeric mini-language (`.3f`, `.1%`, `.2e`, `,`)."),
    Code("E301", "bad field value",
         "A rule field has the wrong type or value (the rule model: the Python API and the builtin library)."),
    Code("E302", "missing field", "A required field is missing, or a shorthand condition has no `metric`."),
    Code("E303", "unknown field", "A field that rules do not have (the rule model); extension keys start with `x-`."),
    Code("E304", "bad integer", "`window`, `min_steps` or `for` is not a whole number in range."),
    Code("E305", "for given twice", "Both the `for` field and `for N steps` in the condition are given."),
    Code("E401", "test case fails", "A case in the rule's `tests:` does not give the expected episodes on the "
         "batch or the incremental engine."),
    Code("E402", "bad test case", "A case in `tests:` cannot be run: `steps` and the series differ in length, "
         "steps are not increasing, or the case names no metric the rule reads."),
    Code("W001", "unknown metric", "The metric is not an alias and not a key that the rule's trainers log "
         "according to the metric catalog (schemas/metric_catalog.yaml). It may be your own metric, or a name "
         "from another TRL version; the rule then never fires. The hint suggests close names."),
    Code("W002", "exact comparison", "`==` or `!=` compares floating-point means exactly; prefer "
         "`range(a, b)` or `outside(a, b)`."),
    Code("W003", "min_steps has no effect", "`min_steps` (a training step) is not above the earliest step at "
         "which the condition can fire on any log (its first evaluation, then `for N steps`), so it suppresses "
         "nothing."),
    Code("W004", "window ignored", "`window` smooths shorthand conditions only; a full expression takes its "
         "windows from its functions (`mean(loss, 20)`)."),
    Code("W005", "template field renders n/a", "The message uses a field that does not apply to this rule "
         "(`baseline` outside drop/rise/spike, `window` or `threshold` of a full expression); it renders `n/a`."),
    Code("W006", "removed trainers only", "Every trainer in `trainers` is one TRL has removed (docs/language.md "
         "§8 lists the releases that had it): the rule audits old logs but never runs on a current one."),
    Code("W007", "eval and training keys mixed", "A full expression reads `eval_*` keys and training keys: "
         "evaluation and training rows share a step only where eval_steps and logging_steps coincide, so "
         "the condition is evaluated only there (possibly never)."),
]

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def describe(code: str) -> Code:
    return CODES.get(code, Code(code, "unlisted", ""))


def markdown_table() -> str:
    """The codes as the Markdown table of docs/lint.md."""
    rows = ["| code | severity | title | meaning |", "|---|---|---|---|"]
    rows += [f"| {c.code} | {c.severity} | {c.title} | {c.explanation} |" for c in _TABLE]
    return "\n".join(rows) + "\n"
