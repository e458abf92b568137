"""The generated grammar reference (docs/grammar.md, docs/diagrams/) and `ruledsl grammar`."""

import re
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from lark import Lark

import ruledsl
from cli_helpers import ruledsl as ruledsl_command
from ruledsl import docs
from ruledsl.docs import content, document, railroad
from ruledsl.docs import grammar_model as gm
from ruledsl.docs.grammar_model import Ref, Token, read_grammar
from ruledsl.lang.read import parse_when

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GRAMMAR = ROOT / "grammar" / "ruledsl.lark"
SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = [e for c in content.CONSTRUCTS for e in c.examples]


def ruledsl_cli(*args: str) -> subprocess.CompletedProcess:
    return ruledsl_command(*args, cwd=ROOT)  # in-process (cli_helpers)


def committed_files() -> dict[str, bytes]:
    files = {"grammar.md": (DOCS / "grammar.md").read_bytes()}
    files |= {f"diagrams/{p.name}": p.read_bytes() for p in sorted((DOCS / "diagrams").glob("*"))}
    return files


def generated_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- drift


def test_committed_docs_equal_a_fresh_generation(tmp_path):
    docs.write_markdown(tmp_path)
    fresh, committed = generated_files(tmp_path), committed_files()
    assert sorted(fresh) == sorted(committed), "docs/ has other files than the generator writes: run make docs"
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"docs/ is out of date with the grammar ({', '.join(changed)}): run make docs"
    assert docs.drift(DOCS) == []


def test_a_changed_grammar_is_caught_as_drift(tmp_path):
    grammar = GRAMMAR.read_text(encoding="utf-8")
    modified = grammar.replace(
        '| NONFINITE                                               -> nonfinite',
        '| NONFINITE                                               -> nonfinite\n'
        '               | CLAMP "(" shorthand_number ")"                        -> clamp',
    ).replace("NONFINITE.2: /nonfinite\\b/", "NONFINITE.2: /nonfinite\\b/\nCLAMP.2: /clamp\\b/")
    assert modified != grammar and "CLAMP" in modified
    path = tmp_path / "ruledsl.lark"
    path.write_text(modified, encoding="utf-8")
    problems = docs.drift(DOCS, grammar_path=path)
    assert "grammar.md: differs from the generated version" in problems
    assert "diagrams/shorthand_call.svg: differs from the generated version" in problems
    assert docs.drift(DOCS, grammar_path=GRAMMAR) == []  # the same function passes on the real grammar


def test_a_grammar_that_drops_a_documented_alternative_names_the_section(tmp_path):
    path = tmp_path / "ruledsl.lark"
    path.write_text(GRAMMAR.read_text(encoding="utf-8").replace("-> spike", "-> spike_term"), encoding="utf-8")
    with pytest.raises(document.DocsContentError, match=r"'spike'.*shorthand_call -> spike.*content\.py"):
        docs.render_markdown(path)


def test_a_grammar_construct_the_renderer_cannot_draw_is_refused_by_name(tmp_path):
    path = tmp_path / "ruledsl.lark"
    text = GRAMMAR.read_text(encoding="utf-8").replace("sustain: FOR INT STEPS", "sustain: FOR INT~1..2 STEPS")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(gm.GrammarShapeError, match="cannot draw"):
        docs.render_markdown(path)


def test_stale_diagrams_are_reported_and_removed(tmp_path):
    docs.write_markdown(tmp_path)
    (tmp_path / "diagrams" / "gone.svg").write_text("<svg/>", encoding="utf-8")
    (tmp_path / "grammar.md").write_text("edited by hand\n", encoding="utf-8")
    assert docs.drift(tmp_path) == ["grammar.md: differs from the generated version",
                                    "diagrams/gone.svg: no longer generated"]
    docs.write_markdown(tmp_path)
    assert docs.drift(tmp_path) == []
    assert not (tmp_path / "diagrams" / "gone.svg").exists()


def test_generation_is_deterministic():
    first, second = docs.render_markdown(), docs.render_markdown()
    assert first == second
    assert docs.render_html() == docs.render_html()


# ---------------------------------------------------------------- coverage of the grammar


def lark_rules():
    """The rules and aliases as Lark itself compiles them (independent of the docs' own reader)."""
    parser = Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", start=["condition", "inline_alert"])
    names = {r.origin.name for r in parser.rules if not r.origin.name.startswith("_")}
    aliases = {r.alias for r in parser.rules if r.alias}
    terminals = {t.name for t in parser.terminals if not t.name.startswith("__")}
    return names, aliases, terminals


def test_every_rule_alias_and_terminal_of_the_grammar_is_documented():
    text = (DOCS / "grammar.md").read_text(encoding="utf-8")
    names, aliases, terminals = lark_rules()
    assert {"condition", "inline_alert", "shorthand_call", "atom"} <= names
    for name in names:
        assert f"\n### {name}\n" in text, f"rule {name} has no section"
        assert f"![railroad diagram of {name}](diagrams/{name}.svg)" in text
        assert re.search(rf"^{name} ::= ", text, re.M), f"rule {name} has no syntax line"
        assert (DOCS / "diagrams" / f"{name}.svg").is_file()
    for alias in aliases:
        assert f"-> {alias}" in text, f"alternative -> {alias} is not shown"
    named = {t for t in terminals if t.isupper() and not t.startswith(("LPAR", "RPAR", "COMMA", "COLON"))}
    for terminal in named - {"WS"}:
        assert f"| `{terminal}` |" in text, f"terminal {terminal} is missing from the table"


def test_every_construct_of_the_brief_has_a_section_with_a_diagram_and_examples():
    text = (DOCS / "grammar.md").read_text(encoding="utf-8")
    sections = re.split(r"\n(?=<a id=)", text)
    by_anchor = {re.match(r'<a id="([^"]+)"', s).group(1): s for s in sections if s.startswith("<a id=")}
    for construct in content.CONSTRUCTS:
        section = by_anchor[construct.anchor]
        assert "](diagrams/" in section, f"{construct.anchor} has no diagram"
        assert "| example | kind | meaning |" in section
        for example in construct.examples:
            assert document.code_span(example.text).replace("|", "\\|") in section
    wanted = {"shorthand-comparisons", "range-and-outside", "drop-and-rise", "spike", "flat", "nonfinite",
              "combinations", "full-expressions", "metric-references", "functions", "sustain",
              "inline-alerts", "severities", "numbers", "error-codes"}
    assert wanted <= set(by_anchor)


def test_every_function_the_checker_knows_is_in_the_table():
    text = (DOCS / "grammar.md").read_text(encoding="utf-8")
    for name in ruledsl.lang.meaning.FUNCTIONS:
        assert re.search(rf"^\| `{name}\(", text, re.M), name


def test_diagram_links_and_files_match():
    text = (DOCS / "grammar.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(diagrams/([^)]+\.svg)\)", text))
    on_disk = {p.name for p in (DOCS / "diagrams").glob("*.svg")}
    assert linked == on_disk


# ---------------------------------------------------------------- examples are real


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.text for e in EXAMPLES])
def test_every_example_parses_as_the_kind_the_docs_state(example):
    if example.inline:
        rule = ruledsl.parse_inline_alert(example.text)
        condition = rule.condition
        assert rule.metric == example.metric
    else:
        assert example.metric is None
        parse = parse_when if example.kind == content.WHEN else ruledsl.parse_condition  # a rule's `when`
        condition = parse(example.text)
    assert condition.kind == example.kind
    assert condition.sustain == example.sustain


@pytest.mark.parametrize("example", content.ERRORS, ids=[e.text[:30] for e in content.ERRORS])
def test_every_error_example_raises_its_code(example):
    parse = parse_when if example.entry == content.WHEN else ruledsl.parse_condition  # E112: a rule's `when`
    with pytest.raises(ruledsl.RuleSyntaxError) as caught:
        parse(example.text)
    assert caught.value.diagnostic.code == example.code


def test_every_condition_error_code_in_the_code_is_documented():
    sources = [ROOT / "ruledsl" / "lang" / "parser.py", ROOT / "ruledsl" / "lang" / "checker.py"]
    used = set().union(*(re.findall(r'"(E1\d\d)"', p.read_text(encoding="utf-8")) for p in sources))
    documented = {e.code for e in content.ERRORS}
    assert used, "no error codes found: has the code moved?"
    assert used == documented


def test_error_messages_are_quoted_from_the_parser():
    text = (DOCS / "grammar.md").read_text(encoding="utf-8")
    exc = document.error_message(content.ERRORS[2])  # maen(...)
    assert exc.diagnostic.message in text


# ---------------------------------------------------------------- diagrams


def expected_boxes(expr):
    tokens, refs = set(), set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Token):
            tokens.add(node.text)
        elif isinstance(node, Ref):
            refs.add(node.name)
        elif isinstance(node, (gm.Sequence, gm.Choice)):
            stack.extend(node.items if isinstance(node, gm.Sequence) else node.options)
        else:
            stack.append(node.item)
    return tokens, refs


def diagram_exprs():
    grammar = read_grammar()
    for rule in grammar.rules:
        yield document.diagram_file(rule), rule.expr
        for alternative in rule.alternatives:
            yield document.diagram_file(rule, alternative), alternative.expr


def boxes(root, kind):
    found = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == kind:
            assert [child.tag for child in group] == [f"{SVG}rect", f"{SVG}text"]
            found.append(group.find(f"{SVG}text").text)
    return found


def test_svgs_are_well_formed_with_one_box_element_per_terminal_and_rule():
    on_disk = {p.name for p in (DOCS / "diagrams").glob("*.svg")}
    checked = 0
    for name, expr in diagram_exprs():
        if name not in on_disk:
            continue  # alternatives no section draws on their own
        root = ET.parse(DOCS / "diagrams" / name).getroot()
        assert root.tag == f"{SVG}svg"
        assert root.find(f".//{SVG}a") is None  # images link nowhere; only the HTML page links
        tokens, refs = expected_boxes(expr)
        assert set(boxes(root, "terminal")) == tokens, name
        assert set(boxes(root, "nonterminal")) == refs, name
        checked += 1
    assert checked == len(on_disk)


def test_a_separated_repetition_is_drawn_as_one_loop():
    root = ET.parse(DOCS / "diagrams" / "disjunction.svg").getroot()
    assert boxes(root, "nonterminal") == ["conjunction"]
    assert boxes(root, "terminal") == ["or"]
    root = ET.parse(DOCS / "diagrams" / "shorthand_call-range.svg").getroot()
    assert boxes(root, "terminal") == ["range", "(", ",", ")"]
    assert boxes(root, "nonterminal") == ["shorthand_number", "shorthand_number"]


def test_svg_coordinates_are_whole_pixels():
    """Integer geometry is what makes the bytes stable across platforms."""
    geometry = ("x", "y", "width", "height", "rx", "viewBox", "d")
    for path in (DOCS / "diagrams").glob("*.svg"):
        for element in ET.parse(path).getroot().iter():
            for name in geometry:
                value = element.get(name)
                if value is not None:
                    assert re.fullmatch(r"[-\d A-Za-z]+", value), (path.name, name, value)


# ---------------------------------------------------------------- html


class _TagBalance(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def test_html_is_one_self_contained_well_formed_page():
    page = docs.render_html()
    assert page.startswith("<!DOCTYPE html>")
    root = ET.fromstring(page.split("\n", 1)[1])  # the page is also well-formed XML
    balance = _TagBalance()
    balance.feed(page)
    assert balance.stack == []
    svgs = root.findall(f".//{SVG}svg")
    assert len(svgs) == page.count("<svg ") and len(svgs) > 20
    assert not re.search(r"<script|<link|src=|https?://(?!www\.w3\.org/2000/svg)", page)
    id_list = [e.get("id") for e in root.iter() if e.get("id")]
    ids = set(id_list)
    assert len(ids) == len(id_list), "an anchor is used twice"
    assert {c.anchor for c in content.CONSTRUCTS} <= ids
    # rule boxes link to the rule's section on the page
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert links and all(link[1:] in ids for link in links)
    assert "#rule-shorthand_number" in links
    # examples are shown as code with their text escaped, backticks and all
    assert "<code>`my-metric (x)` &gt; 1</code>" in page


# ---------------------------------------------------------------- command line


def test_cli_lark_prints_the_grammar_file():
    result = ruledsl_cli("grammar", "--format", "lark")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GRAMMAR.read_text(encoding="utf-8")


def test_cli_markdown_output_dir_reproduces_the_committed_docs(tmp_path):
    result = ruledsl_cli("grammar", "--format", "markdown", "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "grammar.md" in result.stderr  # what it wrote: stderr, as every --output
    assert generated_files(tmp_path / "out") == committed_files()


def test_cli_markdown_to_stdout_and_html_to_a_file(tmp_path):
    result = ruledsl_cli("grammar")
    assert result.returncode == 0, result.stderr
    assert result.stdout == docs.render_printed_markdown()  # grammar.md without links to diagram files
    committed = (DOCS / "grammar.md").read_text(encoding="utf-8").splitlines()
    assert set(result.stdout.splitlines()) >= {line for line in committed if "](diagrams/" not in line}
    page = tmp_path / "grammar.html"
    result = ruledsl_cli("grammar", "--format", "html", "--output", str(page))
    assert result.returncode == 0, result.stderr
    assert page.read_text(encoding="utf-8") == docs.render_html()


def test_cli_refuses_a_markdown_file_as_output(tmp_path):
    result = ruledsl_cli("grammar", "--format", "markdown", "--output", str(tmp_path / "grammar.md"))
    assert result.returncode == 2
    assert "give a directory" in result.stderr and "Traceback" not in result.stderr


def test_cli_help_teaches():
    result = ruledsl_cli("grammar", "--help")
    assert result.returncode == 0
    for word in ("--format", "--output", "markdown", "html", "lark", "make docs"):
        assert word in result.stdout


def test_ebnf_and_diagrams_of_constructs_the_grammar_does_not_use_yet(tmp_path):
    path = tmp_path / "tiny.lark"
    path.write_text('start: item+ ("," item)* ("+" | "-")* [item] END?\n'
                    'item: WORD -> word\n     | "(" start ")"\n'
                    'WORD: /[a-z]+/\nEND: "end"\n%ignore " "\n', encoding="utf-8")
    grammar = read_grammar(path)
    assert [r.name for r in grammar.rules] == ["start", "item"]
    assert gm.rule_ebnf(grammar.rule("start")) == 'start ::= item+ ("," item)* ("+" | "-")* [item] ["end"]'
    assert gm.rule_ebnf(grammar.rule("item")).split("\n") == ['item ::= WORD            -> word',
                                                            '       | "(" start ")"']
    root = ET.fromstring(railroad.diagram(grammar.rule("start").expr, "start"))
    assert sorted(boxes(root, "terminal")) == ["+", ",", "-", "end"]
    assert boxes(root, "nonterminal") == ["item", "item", "item"]  # `("," item)*` after `item+` is its own loop
