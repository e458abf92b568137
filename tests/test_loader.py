"""Rule files → rules: positions in YAML, schema, duplicate keys, selection, and the metric catalog."""

from pathlib import Path

import pytest

from ruledsl.lang.errors import Span
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.loader import RuleLoadError, load_rules, read_rule_file
from ruledsl.model.yaml_source import YamlError, read_yaml

RULE = """\
name: {name}
trainers: {trainers}
metric: loss
condition: "< 0.5"
severity: high
message: "loss {{value}}"
{extra}"""


def write(folder: Path, relative: str, name: str, trainers: str = "[sft]", extra: str = "") -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RULE.format(name=name, trainers=trainers, extra=extra))
    return path


@pytest.mark.parametrize("scalar, value, inner, expected, source_char", [
    ('plain text here', "plain text here", 6, (1, 12), "t"),
    ('"a \\u003c b"', "a < b", 2, (1, 9), "\\"),  # an escape is one character of the value
    ("'it''s < b'", "it's < b", 5, (1, 13), "<"),
    ("|\n  line one\n  < b\n", "line one\n< b\n", 9, (3, 3), "<"),
    (">\n  folded\n  text\n", "folded text\n", 7, (3, 3), "t"),
])
def test_a_position_inside_a_string_maps_to_the_file(scalar, value, inner, expected, source_char):
    document = read_yaml(f"key: {scalar}")
    assert document.data["key"] == value
    span = document.span_in_string(("key",), Span.at(value, inner))
    assert (span.line, span.column) == expected
    assert document.text[span.start] == source_char


def test_duplicate_keys_at_any_depth_are_found():
    document = read_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    found = [(d.code, d.span.line, d.span.column) for d in document.duplicate_keys]
    assert found == [("E004", 4, 3), ("E004", 5, 1)]


def test_unsafe_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(YamlError) as caught:
        read_yaml(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert caught.value.diagnostic.code == "E002" and "not allowed" in caught.value.diagnostic.message
    assert not marker.exists()


def test_load_rules_selects_by_trainer_and_honours_enabled(tmp_path):
    write(tmp_path, "sft/a.yaml", "a")
    write(tmp_path, "common/b.yaml", "b", trainers="[common]")
    write(tmp_path, "dpo/c.yaml", "c", trainers="[dpo, sft]")
    write(tmp_path, "dpo/d.yml", "d", trainers="[dpo]", extra="enabled: false\n")
    def names(trainer):
        return sorted(r.name for r in load_rules([tmp_path], trainer, include_builtin=False))
    assert names("sft") == ["a", "b", "c"]
    assert names("dpo") == ["b", "c"]
    assert names(None) == ["a", "b", "c"]  # unknown trainer: every enabled rule
    assert names("all") == names("common") == ["b"]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    write(tmp_path, "a.yaml", "dup")
    write(tmp_path, "b.yaml", "dup")
    write(tmp_path, "c.yaml", "c", extra="window: 0\n")
    (tmp_path / "d.yaml").write_text("trainers: [sft]\n")
    with pytest.raises(RuleLoadError) as caught:
        load_rules([tmp_path], include_builtin=False)
    found = sorted((p.path.name, p.diagnostic.code) for p in caught.value.problems)
    # d.yaml lacks name, condition, severity and message
    assert found == [("b.yaml", "E003"), ("c.yaml", "E010")] + [("d.yaml", "E010")] * 4
    assert "a.yaml" in str(caught.value)  # the duplicate names both files
    assert "c.yaml:7:9: [E010] window: 0 is less than the minimum of 1" in str(caught.value)


def test_schema_and_rule_model_do_not_report_one_problem_twice(tmp_path):
    path = write(tmp_path, "a.yaml", "a", extra="severity: hihg\n").with_name("a.yaml")
    path.write_text(path.read_text().replace("severity: high\n", ""))
    rule_file = read_rule_file(path)
    assert [(p.diagnostic.code, p.diagnostic.field) for p in rule_file.problems] == [("E010", "severity")]


def test_line_ends_are_read_as_text_mode_reads_them(tmp_path):
    path = write(tmp_path, "a.yaml", "a", extra="window: 0\n")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    rule_file = read_rule_file(path)
    assert rule_file.text == path.read_text(encoding="utf-8") and "\r" not in rule_file.text
    assert [str(p).split(": [")[0] for p in rule_file.problems] == [f"{path}:7:9"]


def test_extension_keys_are_allowed(tmp_path):
    path = write(tmp_path, "a.yaml", "a", extra="x-owner: team-rl\n")
    rule_file = read_rule_file(path)
    assert not rule_file.problems and rule_file.rule.extensions == {"x-owner": "team-rl"}


def test_the_catalog_resolves_renamed_keys_both_ways():
    catalog = builtin_catalog()
    assert catalog.candidates("completion_length", ["grpo"]) == ("completion_length", "completions/mean_length")
    assert catalog.candidates("completions/mean_length", ["grpo"]) == (
        "completions/mean_length", "completion_length")
    assert catalog.candidates("completion_length", ["dpo"]) == ("completion_length",)


def test_the_catalog_knows_trainers_keys_and_placeholders():
    catalog = builtin_catalog()
    assert {"sft", "dpo", "grpo", "kto", "rloo", "reward", "online_dpo"} <= catalog.trainer_ids
    assert catalog.config_classes["online_dpo"] == "OnlineDPOConfig"
    assert catalog.is_known("rewards/margins", ["dpo"]) and not catalog.is_known("rewards/margins", ["sft"])
    assert catalog.is_known("eval_rewards/margins", ["dpo"])  # evaluation rows
    assert catalog.is_known("rewards/my_reward_fn/mean", ["grpo"])  # a placeholder key
    assert not catalog.is_known("my_own_metric", ["grpo"])  # `{user_metric}` says nothing
    assert catalog.is_known("importance_sampling_ratio", ["grpo"])  # an alias with a key for grpo
    assert not catalog.is_known("importance_sampling_ratio", ["sft"])
    assert catalog.is_known("train_runtime", ["sft"])  # transformers.Trainer's own keys
    assert catalog.suggestions("rewards/margin", ["dpo"])[0] == "rewards/margins"


def test_the_schema_describes_every_property_for_editors():
    from ruledsl.model.schema import rule_schema

    schema = rule_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"]
    missing = []

    def visit(node, path):
        for name, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(".".join(path + [name]))
            visit(sub, path + [name])
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                visit(node[key], path + [key])

    visit(schema, [])
    assert not missing, missing


def test_every_builtin_rule_file_points_editors_at_the_schema():
    from ruledsl.model.loader import builtin_rules_dir, discover

    for path in discover([builtin_rules_dir()]):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../schemas/rule.schema.json", path
        assert (path.parent / "../../schemas/rule.schema.json").resolve().is_file()
