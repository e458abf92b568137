"""What the grammar reference says about each construct: meanings and examples.

The syntax itself is never written here: `syntax` names the grammar rules,
alternatives (`rule -> alias`, or `rule | EBNF` for an unnamed one) and
terminals a section is about, and the generator draws them from the .lark
file. Every example is parsed by tests/test_grammar_docs.py, which also
checks the kind stated here (shorthand, expression, or `when` for a rule's
`when` field, parsed by `parse_when`), so the page cannot show text the
parser rejects. Meanings restate docs/language.md, the language reference,
for contributors.

Inline text uses Markdown code spans (`...`) and links ([text](#anchor)) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SHORTHAND = "shorthand"
EXPRESSION = "expression"
WHEN = "when"  # a rule's `when` field: checked by `parse_when`, not `parse_condition`
CONDITION = "condition"  # where an error example is read: a rule's `condition` (or WHEN)


@dataclass(frozen=True)
class Example:
    text: str
    kind: str  # SHORTHAND (applies to the rule's `metric`), EXPRESSION (names its metrics) or WHEN
    meaning: str
    inline: bool = False  # an inline alert rather than a rule's condition
    metric: str | None = None  # inline alerts: the metric the alert reads as (None: full expression)
    sustain: int | None = None  # the `for N steps` it carries, if any


@dataclass(frozen=True)
class Construct:
    anchor: str
    title: str
    syntax: tuple[str, ...]
    meaning: tuple[str, ...]  # paragraphs
    examples: tuple[Example, ...]
    notes: tuple[str, ...] = field(default=())  # bullet points after the examples


@dataclass(frozen=True)
class ErrorExample:
    code: str
    raised_when: str
    text: str
    shown: str | None = None  # how to show a text too long to print
    entry: str = CONDITION  # CONDITION: `parse_condition` raises it; WHEN: `parse_when` (a rule's `when`)


CONSTRUCTS: tuple[Construct, ...] = (
    Construct(
        "shorthand-comparisons", "Shorthand comparisons",
        ("shorthand -> shorthand_compare", "COMPARATOR"),
        (
            "A shorthand has no metric in it: it applies to the rule's `metric` field. With the rule's "
            "`window` W (1 unless given), the value compared is v_i, the mean of the last W values of "
            "the series, so nothing fires before W values were seen.",
            "`==` and `!=` compare exactly; the linter suggests `range` instead, since a float rarely "
            "equals a constant.",
        ),
        (
            Example("< 0.5", SHORTHAND, "fires at each step where the smoothed value is below 0.5"),
            Example(">= 10", SHORTHAND, "fires where the smoothed value is 10 or more"),
            Example("!= 0", SHORTHAND, "fires where the smoothed value is anything but exactly 0"),
        ),
    ),
    Construct(
        "range-and-outside", "range and outside",
        ("shorthand_call -> range", "shorthand_call -> outside"),
        (
            "`range(a, b)` holds while v_i stays between a and b, both ends included; `outside(a, b)` "
            "holds while v_i is below a or above b. The first bound may not exceed the second (E105).",
        ),
        (
            Example("range(0.68, 0.71)", SHORTHAND,
                    "fires while the smoothed value sits within 0.68 … 0.71 — a DPO loss stuck near ln 2"),
            Example("outside(0.8, 1.2)", SHORTHAND,
                    "fires when the smoothed value leaves the band 0.8 … 1.2 on either side"),
        ),
    ),
    Construct(
        "drop-and-rise", "drop and rise",
        ("shorthand_call -> drop", "shorthand_call -> rise"),
        (
            "Both compare v_i with a baseline B, the mean of the first W values of the series. "
            "`drop(P%)` holds when v_i has fallen at least P percent below B, `rise(P%)` when it has "
            "climbed at least P percent above it; the change is measured relative to |B|, and a zero "
            "baseline never fires. They are defined once 2W values were seen (W for B, W more for v_i).",
            "The `%` is optional and P must be greater than 0.",
        ),
        (
            Example("drop(50%)", SHORTHAND, "fires once the smoothed value is at most half of its baseline"),
            Example("rise(200%)", SHORTHAND, "fires once the smoothed value is at least three times its baseline"),
            Example("drop(30)", SHORTHAND, "the same as `drop(30%)`"),
        ),
    ),
    Construct(
        "spike", "spike",
        ("shorthand_call -> spike",),
        (
            "`spike(Kx)` holds when the raw value x_i is at least K times m, the mean of the W values "
            "just before it (x_i itself left out), and m is positive. It is defined from the (W+1)-th "
            "value on. The `x` is optional and K must be greater than 0.",
        ),
        (
            Example("spike(3x)", SHORTHAND, "fires at a value three or more times the mean of the previous W"),
            Example("spike(10)", SHORTHAND, "the same with K = 10, written without the `x`"),
        ),
    ),
    Construct(
        "flat", "flat",
        ("shorthand_call -> flat",),
        (
            "`flat(e)` holds when the last W raw values lie within e of each other: their max minus "
            "their min is at most e. It catches a metric that stopped moving. e cannot be negative.",
        ),
        (
            Example("flat(0)", SHORTHAND, "fires when the last W values are all equal"),
            Example("flat(1e-6)", SHORTHAND, "fires when the last W values differ by at most one millionth"),
        ),
    ),
    Construct(
        "nonfinite", "nonfinite",
        ("shorthand_call -> nonfinite",),
        (
            "`nonfinite` holds at every row where the metric's raw value is NaN, +inf or -inf; these "
            "values are left out of every other series, so this is the only way to see them. The window "
            "does not apply, and `nonfinite` must be the whole condition: combining it is error E109.",
        ),
        (
            Example("nonfinite", SHORTHAND, "fires at each row where the metric was logged as NaN or ±inf"),
        ),
    ),
    Construct(
        "absent", "absent(N)",
        ("shorthand_call -> absent",),
        (
            "`absent(N)` catches a metric that stopped arriving while the run went on. It is evaluated at "
            "every logged step of the run after the one where the metric first appears (the steps of all rows, "
            "merged, whatever keys they carry); at step s it holds when s − L ≥ N, where L is the latest "
            "step up to s at which the metric was present. Present means a number, NaN and ±inf "
            "included; a null value or a row without the key is absent. Before the metric first appears, "
            "nothing is counted. Its value is s − L.",
            "N counts training steps: a whole number from 1 to 10^12 (E104). The window does not apply, "
            "and like `nonfinite` it must be the whole condition (E109).",
        ),
        (
            Example("absent(50)", SHORTHAND,
                    "fires at each logged step that comes 50 or more training steps after the metric's last value"),
            Example("absent(1)", SHORTHAND,
                    "fires at every logged step that lacks the metric (or logs it as null), once it has appeared"),
        ),
    ),
    Construct(
        "combinations", "Combining terms: and, or, not, parentheses",
        ("disjunction", "conjunction", "negation", 'atom | "(" disjunction ")"'),
        (
            "Terms combine with `not` (binds tightest), then `and`, then `or`; parentheses group. "
            "A combination of shorthands applies every term to the rule's metric and is evaluated "
            "where all its terms are defined; its reported value is that of its first term. A "
            "combination of comparisons is a full expression.",
            "Both styles cannot be mixed in one condition (E108), and neither `nonfinite` nor `absent(N)` "
            "can be combined (E109).",
        ),
        (
            Example("< 0.5 or > 2", SHORTHAND, "fires where the smoothed value is below 0.5 or above 2"),
            Example("not range(0.9, 1.1)", SHORTHAND, "the same as `outside(0.9, 1.1)`"),
            Example("(< 0.5 or > 2) and flat(0.01)", SHORTHAND,
                    "out of bounds and no longer moving: both must hold at the same step"),
            Example("loss > 2 and not grad_norm < 1", EXPRESSION,
                    "fires where the loss is above 2 while the gradient norm is 1 or more"),
        ),
    ),
    Construct(
        "full-expressions", "Full expressions",
        ("comparison -> compare", "sum", "product", "unary -> negative"),
        (
            "A condition that names a metric is a full expression; the rule's `metric` field is then "
            "optional and its `window` is ignored. Arithmetic is `+ - * /` and unary minus, `*` and `/` "
            "binding tighter than `+` and `-`, each level left to right; comparisons take whole sums "
            "on both sides.",
            "It is evaluated at the rows where every metric it names is present and finite and every "
            "function in it is defined. A division by zero makes the comparison around it false. It must "
            "name at least one metric: `step`, `config.KEY` and literals alone are error E110.",
        ),
        (
            Example("logps/chosen < 0 and logps/rejected < 0", EXPRESSION,
                    "fires where both log-probabilities are negative at the same step"),
            Example("rewards/chosen - rewards/rejected < 0", EXPRESSION,
                    "fires where the rejected answer earns more reward than the chosen one"),
            Example("-kl > 0.1", EXPRESSION, "fires where the KL estimate is below -0.1"),
        ),
    ),
    Construct(
        "metric-references", "Metric references",
        ("atom -> metric", "atom -> quoted_metric", "NAME", "QUOTED_NAME"),
        (
            "A bare metric name is made of letters, digits, `_` and `.`, in parts joined by `/`: "
            "`rewards/chosen` is one name. Division needs spaces: `a / b`. Any other log key goes "
            "between backticks; a backticked name is always a log key, even `` `step` ``. A name may also "
            "be a catalog alias (`importance_sampling_ratio`), resolved per run to the key the run logs.",
            "A few bare names are not metrics: `step`, `true`, `false` and every name starting with "
            "`config.` (see [Names with a meaning](#reserved-names)).",
        ),
        (
            Example("rewards/margins < 0", EXPRESSION, "reads the single metric `rewards/margins`"),
            Example("loss / grad_norm > 10", EXPRESSION, "divides the loss by the gradient norm"),
            Example("`my-metric (x)` > 1", EXPRESSION, "reads the log key `my-metric (x)`, which needs backticks"),
            Example("`step` > 1000", EXPRESSION, "reads a logged metric whose key is `step`, not the training step"),
        ),
    ),
    Construct(
        "reserved-names", "Names with a meaning: step, config.KEY, true, false",
        ("atom -> metric", "NAME"),
        (
            "The same `NAME` token builds a different node for four kinds of names. `step` is the row's "
            "training step, a number. `config.KEY` is the value of `KEY` in the run's configuration (the "
            "trainer's arguments, flattened with `.`: `config.beta`, `config.report_to.0`); a value that "
            "arrived as text is read as a JSON scalar where it parses as one. `true` and `false` are "
            "boolean literals.",
            "A condition may use them only beside a metric: one that names no metric is error E110. A "
            "rule whose condition reads a configuration key the run lacks (or holds null) is not "
            "evaluated on that run, and the coverage report gives the reason `config_unknown`; so does "
            "a value of the wrong kind used with `<` or in arithmetic (a text `config.beta`).",
        ),
        (
            Example("loss > 0.68 and step >= 200", EXPRESSION,
                    "fires where the loss is above 0.68 from training step 200 on"),
            Example("rewards/margins < 0.05 * config.beta", EXPRESSION,
                    "the threshold scales with the run's DPO `beta`"),
            Example("loss > 1 and config.use_vllm == true", EXPRESSION,
                    "fires where the loss is above 1, on runs that generate with vLLM"),
        ),
    ),
    Construct(
        "literals", "Text and boolean literals",
        ("atom -> string", "STRING"),
        (
            "A text literal is written in single or double quotes, on one line, with no escapes; "
            "`true` and `false` are the booleans. Both may only be compared with `==` and `!=`: with "
            "`<`, `<=`, `>`, `>=`, in arithmetic or as a function's argument they are error E111. "
            "Values of different kinds are never equal: `true == 1` is false, and `!=` between them is "
            "true.",
        ),
        (
            Example("loss > 1 and config.loss_type == 'sigmoid'", EXPRESSION,
                    "fires where the loss is above 1, on runs whose `loss_type` is `sigmoid`"),
            Example('kl > 0.1 and config.loss_type != "dapo"', EXPRESSION,
                    "double quotes work the same"),
        ),
    ),
    Construct(
        "when", "when: rules for some configurations",
        ("disjunction", "comparison -> compare"),
        (
            "A rule file's optional `when` field is read by the same grammar as a condition, then "
            "checked by `parse_when`: it may hold only comparisons of `config.KEY` with literals and "
            "numbers, joined by `and`, `or`, `not` and parentheses. A metric, `step`, a function, a "
            "shorthand or `for N steps` in it is error E112. The rule runs only on runs whose "
            "configuration satisfies it; on the others the coverage report says `when_false`.",
            "Where it cannot be decided (a key missing, or a value of the wrong kind for `<`), the rule "
            "is not evaluated on the run and the coverage report says `config_unknown`.",
        ),
        (
            Example("config.use_vllm == true", WHEN, "the rule applies to runs that generate with vLLM"),
            Example("config.loss_type != 'sigmoid' and config.beta >= 0.1", WHEN,
                    "runs with another loss type and a `beta` of at least 0.1"),
            Example("not (config.max_steps > 0)", WHEN, "runs without a positive `max_steps`"),
        ),
    ),
    Construct(
        "functions", "Functions",
        ("atom -> call",),
        (
            "Functions read a metric's own series (its finite values, in step order) and are defined "
            "once that series holds enough values. Windows and `k` are whole numbers from 1 to 100,000 "
            "(E104); the list below comes from the checker's table of known functions.",
            "`mean`, `min`, `max`, `std` and `sum` take an optional third argument, the lag L (a whole "
            "number from 0 to 100,000, 0 when left out): the window of W values ending L values before "
            "the current one, x_(i-L-W+1) … x_(i-L). It is defined once the series holds W+L values. "
            "`std` is the population standard deviation; every window sum is added left to right.",
        ),
        (
            Example("mean(loss, 20) > 2 * baseline(loss, 20)", EXPRESSION,
                    "fires when the mean of the last 20 loss values is more than twice the mean of its first 20"),
            Example("abs(delta(kl, 1)) > 0.5", EXPRESSION,
                    "fires when the KL moves by more than 0.5 from one value to the next"),
            Example("std(reward, 50) < 0.01", EXPRESSION, "fires when the reward has stopped varying"),
            Example("grad_norm > mean(grad_norm, 3, 1)", EXPRESSION,
                    "fires where the gradient norm exceeds the mean of the 3 values before it"),
            Example("mean(grad_norm, 20, 1) > 0 and grad_norm >= 10 * mean(grad_norm, 20, 1)", EXPRESSION,
                    "`spike(10x)` with W = 20, written as a full expression"),
        ),
    ),
    Construct(
        "sustain", "for N steps",
        ("condition", "sustain"),
        (
            "A trailing `for N steps` (or `step`) counts training steps, not evaluations, so a rule means "
            "the same whatever the run's `logging_steps`. It fires at an evaluation at step s only when "
            "the condition held at every evaluation of the current streak (the evaluations in a row at "
            "which it holds, ending at this one) and s − s₀ ≥ N − 1, s₀ being the step of the streak's "
            "first evaluation. Logged every step, `for 3 steps` needs 3 evaluations in a row; logged "
            "every 10 steps, `for 50 steps` needs 6.",
            "A row without the metric is no evaluation: it neither breaks the streak nor stops its steps "
            "from counting. N runs from 1 to 10^12 (E104). A rule file may give the `for` field instead, "
            "not both. Then `min_steps` (a training step too) holds back alerts at steps below it.",
        ),
        (
            Example("< 0.5 for 3 steps", SHORTHAND,
                    "fires once the value has stayed below 0.5 over a streak spanning 3 training steps",
                    sustain=3),
            Example("loss > 2 for 1 step", EXPRESSION, "the same as `loss > 2`", sustain=1),
        ),
    ),
    Construct(
        "inline-alerts", "Inline alerts",
        ("inline_alert", "trainer_list", "comparison -> applied_shorthand", "comparison -> applied_negation",
         "TRAINER", "MESSAGE"),
        (
            "A whole rule on one line: `TRAINERS: CONDITION [for N steps] -> SEVERITY: MESSAGE`. "
            "TRAINERS is one trainer id, a comma list, or `*` (also `all`) for every trainer. Trainer ids "
            "match exactly: an id the catalog does not know (`DPO`, `grop`) is an error with a "
            "did-you-mean, never a rule that matches nothing.",
            "When the condition starts with a metric followed by a shorthand (`loss drop(50%)`, "
            "`loss not range(0.6, 0.8)`, `loss (< 0.5) or (> 2)`, and also `loss < 0.5`), that metric is "
            "the rule's metric and the rest applies to it; otherwise the condition is a full expression. "
            "`loss (< 0.5) or (> 2)` reads in the grammar as a call of `loss`, a name that is no "
            "function; the checker turns it into the metric and its shorthand. In a rule file the "
            "metric goes in `metric:` and these forms are error E108.",
            "The message runs to the end of the text, `-`, `:` and `->` included, and may use templates "
            "such as `{value:.3f}`. Inline alerts use window 1; the rule's generated name is the same "
            "for the same text.",
        ),
        (
            Example("grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed", SHORTHAND,
                    "GRPO runs: alert when the importance-sampling ratio falls below 0.5",
                    inline=True, metric="importance_sampling_ratio"),
            Example("dpo,kto: rewards/margins drop(50%) -> medium: margins fell to {value:.3f}", SHORTHAND,
                    "DPO and KTO runs: the reward margin fell to half of its first value or less",
                    inline=True, metric="rewards/margins"),
            Example("*: loss nonfinite -> critical: loss is {value} at step {step}", SHORTHAND,
                    "every trainer: the loss became NaN or infinite", inline=True, metric="loss"),
            Example("dpo: loss not range(0.6, 0.8) -> low: loss left 0.6 … 0.8", SHORTHAND,
                    "a negated shorthand after the metric: the loss is outside 0.6 … 0.8",
                    inline=True, metric="loss"),
            Example("sft: loss (< 0.5) or (> 2) -> medium: loss at {value:.2f}", SHORTHAND,
                    "several shorthands applied to one metric, in parentheses", inline=True, metric="loss"),
            Example("all: logps/chosen < 0 and logps/rejected < 0 for 5 steps -> low: both log-probs negative",
                    EXPRESSION, "a full expression that must hold over a streak spanning 5 training steps",
                    inline=True, sustain=5),
        ),
    ),
    Construct(
        "metric-patterns", "Metric patterns",
        ("atom -> quoted_metric", "QUOTED_NAME"),
        (
            "A metric pattern has `*` where a key has one or more characters other than `/`: "
            "`rewards/*/std` matches `rewards/accuracy_reward/std` but not `rewards/a/b/std`; there is "
            "no `**`. It goes in a rule's `metric:` with a shorthand condition, or, in an inline alert, "
            "as the metric the alert starts with, in backticks. Anywhere else (inside a full "
            "expression, or with `**`) it is error E113.",
            "The rule is evaluated on every key of the run that matches and has a non-null value, each "
            "with its own series, evaluations and episodes; every record carries its key as `metric`. "
            "Catalog aliases do not apply to patterns.",
        ),
        (
            Example("grpo: `rewards/*/std` < 0.01 -> medium: {metric} has no spread", SHORTHAND,
                    "one alert per reward function whose reward stopped varying within groups",
                    inline=True, metric="rewards/*/std"),
        ),
    ),
    Construct(
        "severities", "Severities",
        ("inline_alert", "SEVERITY"),
        (
            "From least to most urgent: `low`, `medium`, `high`, `critical`. A rule file gives it in "
            "`severity:`; an inline alert after `->`. `ruledsl audit --fail-on high` exits 1 when an "
            "alert of that severity or worse was found.",
        ),
        (
            Example("sft: loss > 10 -> critical: loss exploded to {value:.1f}", SHORTHAND,
                    "the most urgent level", inline=True, metric="loss"),
            Example("dpo: rewards/accuracies < 0.5 for 20 steps -> low: the model prefers rejected answers",
                    SHORTHAND, "the least urgent level", inline=True, metric="rewards/accuracies", sustain=20),
        ),
    ),
    Construct(
        "numbers", "Numbers, percentages and multipliers",
        ("shorthand_number", "atom -> number", "NUMBER", "UNIT"),
        (
            "Numbers are decimal: `3`, `-0.5`, `1e-3`, `.5`. A `%` suffix is allowed only inside "
            "`drop`/`rise` and an `x` suffix only inside `spike`; anywhere else a suffix is error E105.",
        ),
        (
            Example("> -0.5", SHORTHAND, "a negative threshold"),
            Example("< 1e-3", SHORTHAND, "a threshold in scientific notation"),
            Example("< .5", SHORTHAND, "a fraction without its leading zero"),
            Example("loss > 1e3", EXPRESSION, "numbers work the same way in full expressions"),
        ),
    ),
)


ERRORS: tuple[ErrorExample, ...] = (
    ErrorExample("E101", "the text does not follow the grammar", "< 0.5 or"),
    ErrorExample("E101", "the text does not follow the grammar", "loss = 2"),
    ErrorExample("E102", "a function name is not one of the known functions", "maen(loss, 20) > 1"),
    ErrorExample("E103", "a function gets the wrong number or kind of arguments", "mean(loss) > 1"),
    ErrorExample("E103", "a value stands where a comparison belongs", "loss"),
    ErrorExample("E104", "a window, lag or step count is not a whole number in range", "mean(loss, 2.5) > 1"),
    ErrorExample("E104", "a window, lag or step count is not a whole number in range", "< 1 for 0 steps"),
    ErrorExample("E104", "a window, lag or step count is not a whole number in range", "max(loss, 100001) > 1"),
    ErrorExample("E104", "a window, lag or step count is not a whole number in range", "absent(0)"),
    ErrorExample("E105", "a number is out of place or out of bounds", "range(2, 1)"),
    ErrorExample("E105", "a number is out of place or out of bounds", "< 50%"),
    ErrorExample("E105", "a number is out of place or out of bounds", "spike(3%)"),
    ErrorExample("E106", "the condition nests too deeply", "not " * 70 + "loss > 1",
                 shown="not not … (70 times) loss > 1"),
    ErrorExample("E107", "the text is too long", "loss > " + "1 + " * 1100 + "1",
                 shown="loss > 1 + 1 + … (a condition of more than 4096 characters)"),
    ErrorExample("E108", "a shorthand is mixed with named metrics or used as a value", "loss < 1 and > 2"),
    ErrorExample("E108", "a shorthand is mixed with named metrics or used as a value", "loss drop(50%)"),
    ErrorExample("E109", "`nonfinite` is combined with other terms", "nonfinite or > 1e6"),
    ErrorExample("E109", "`absent(N)` is combined with other terms", "absent(50) or < 1"),
    ErrorExample("E110", "a condition names no metric", "step > 100"),
    ErrorExample("E111", "a boolean or text is used with `<`, `<=`, `>`, `>=` or in arithmetic", "loss > true"),
    ErrorExample("E111", "a boolean or text is used with `<`, `<=`, `>`, `>=` or in arithmetic", "loss * 'x' > 1"),
    ErrorExample("E112", "a rule's `when` reads the log", "loss > 1", entry=WHEN),
    ErrorExample("E112", "a rule's `when` reads the log", "config.beta > 0 for 10 steps", entry=WHEN),
    ErrorExample("E113", "a metric pattern is used in a full expression", "`rewards/*/std` < 0.01"),
)
