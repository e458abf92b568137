"""Hostile rule files and `ruledsl new` arguments: refused in seconds and in little memory, never a hang.

What could exhaust memory or block (an alias bomb, a huge file, a FIFO, /dev/zero, a huge window
or `for`) runs in a child process limited to `MEMORY_LIMIT` of address space and `TIMEOUT` seconds:
before the fixes it would have taken the machine's memory or hung the test run, now it must fail
alone. CPU seconds, not wall-clock time, are bounded: they do not grow with the machine's load.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import ROOT, ruledsl
from ruledsl.authoring.scaffold import MAX_CASE_VALUES
from ruledsl.model.loader import MAX_RULE_FILE_BYTES
from ruledsl.model.yaml_source import MAX_DEPTH, MAX_LINE_LENGTH, YamlError, read_yaml

MEMORY_LIMIT = 1536 * 1024 * 1024  # ruledsl and polars start in ~100 MB; the bomb took 2.6 GB before failing
TIMEOUT = 60  # seconds of wall-clock time: only a hang reaches it
LIMIT_MEMORY = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
# `python -c RUN_CLI ARGS…`: the `ruledsl` command, as `python -m ruledsl ARGS…`, within the memory limit.
RUN_CLI = LIMIT_MEMORY + "import runpy, sys; sys.argv = ['ruledsl', *sys.argv[1:]]; " \
    "runpy.run_module('ruledsl', run_name='__main__', alter_sys=True)"
# `python -c READ PATH`: read_rule_file(PATH) within the memory limit; prints its problems and CPU seconds.
READ = LIMIT_MEMORY + """
import json, sys, time
from pathlib import Path
from ruledsl.model.loader import read_rule_file
start = time.process_time()
rule_file = read_rule_file(Path(sys.argv[1]))
seconds = time.process_time() - start
problems = [{"code": p.diagnostic.code, "message": p.diagnostic.message, "hint": p.diagnostic.hint,
             "where": [p.diagnostic.span.line, p.diagnostic.span.column] if p.diagnostic.span else None}
            for p in rule_file.problems]
print(json.dumps({"seconds": seconds, "problems": problems}))
"""
RULE = """\
name: hostile
trainers: [sft]
metric: loss
condition: "< 0.5"
severity: high
message: "loss {value}"
"""
# A "billion laughs": 9 levels of 9 aliases to the level below, 9^9 (387 million) strings once expanded.
BOMB = RULE + "x-bomb:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  a{level}: &a{level} [{','.join([f'*a{level - 1}'] * 9)}]\n" for level in range(1, 9))
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


def child(code: str, *args: str | Path, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    """`python -c code args…` (in `cwd`) and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, timeout=TIMEOUT, env={**os.environ, "NO_COLOR": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def read_in_child(path: Path) -> tuple[list[dict], float]:
    """read_rule_file(path)'s problems and the CPU seconds the read took, in a limited child."""
    result, _ = child(READ, path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return report["problems"], report["seconds"]


def lint_in_child(*args: str | Path) -> tuple[subprocess.CompletedProcess, float]:
    result, seconds = child(RUN_CLI, "lint", "--no-builtin", "--no-tests", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result, seconds


def line_column(text: str, offset: int) -> list[int]:
    return [text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)]


# ---------------------------------------------------------------- anchors and aliases


def test_an_alias_bomb_is_refused_at_its_first_anchor_before_anything_is_expanded(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB.encode()) < 1024  # under a kilobyte
    problems, seconds = read_in_child(path)
    assert problems == [{
        "code": "E002", "where": line_column(BOMB, BOMB.index("&a0")),
        "message": "the anchor '&a0': rule files have no anchors or aliases (an alias repeats a value by reference, "
                   "and a few hundred bytes of them can expand into gigabytes)",
        "hint": "rule files do not use anchors (&) or aliases (*); write the value out"}]
    assert seconds < 1


def test_lint_refuses_the_alias_bomb_in_seconds(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    result, seconds = lint_in_child(tmp_path / "bomb.yaml")
    line, column = line_column(BOMB, BOMB.index("&a0"))
    assert result.returncode == 1
    assert f"bomb.yaml:{line}:{column}: error[E002] the anchor '&a0'" in result.stdout
    assert "anchors (&) or aliases (*)" in result.stdout
    assert seconds < 8  # the whole command, interpreter start included; the bomb took 32 s to a traceback


@pytest.mark.parametrize("text, written, kind", [
    ("x-a: &keep 1\n", "&keep", "anchor"),  # defined, never used: still not a rule file's YAML
    ("x-a: *nowhere\n", "*nowhere", "alias"),  # an alias to nothing says so, not "undefined alias"
    ("x-é: [1, &b 2]\nx-c: *b\n", "&b", "anchor"),  # a column in characters, after a non-ASCII one
    ("x-a: &m {b: 1}\nx-c: {<<: *m}\n", "&m", "anchor"),  # a merge key reads an alias too
    ("x-a: &loop [*loop]\n", "&loop", "anchor"),  # a list that contains itself
])
def test_every_anchor_or_alias_is_refused_at_the_first(text, written, kind):
    with pytest.raises(YamlError) as caught:
        read_yaml(RULE + text)
    diagnostic = caught.value.diagnostic
    assert diagnostic.code == "E002" and diagnostic.message.startswith(f"the {kind} '{written}': ")
    offset = len(RULE) + text.index(written)
    assert (diagnostic.span.start, diagnostic.span.end) == (offset, offset + len(written))


def test_stars_and_ampersands_in_strings_are_not_aliases():
    text = RULE.replace('"< 0.5"', '"mean(loss, 3) > 2 * baseline(loss, 3)"').replace(
        "metric: loss\n", "").replace('"loss {value}"', '"R&D loss * 2 = {value}"') + "x-note: '*not an alias*'\n"
    document = read_yaml(text)
    assert document.data["message"] == "R&D loss * 2 = {value}" and document.data["x-note"] == "*not an alias*"


def test_an_integer_too_long_for_python_is_e002_at_its_place():
    text = RULE + "x-big: " + "9" * 5000 + "\n"
    with pytest.raises(YamlError) as caught:
        read_yaml(text)
    diagnostic = caught.value.diagnostic
    assert diagnostic.code == "E002" and "5,000 characters" in diagnostic.message
    assert [diagnostic.span.line, diagnostic.span.column] == [7, 8]


def nested(depth: int) -> str:
    """A rule with a value `depth` levels deep: `depth` lists in lists, the outer one `x-deep`'s (level 1)."""
    return RULE + "x-deep: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 999])  # 999: as deep as libyaml reads, past Python's recursion
def test_values_nested_beyond_the_limit_are_e002_at_the_first_too_deep(depth):
    with pytest.raises(YamlError) as caught:
        read_yaml(nested(depth))
    diagnostic = caught.value.diagnostic
    assert diagnostic.code == "E002" and f"more than {MAX_DEPTH} levels deep" in diagnostic.message
    assert [diagnostic.span.line, diagnostic.span.column] == [7, 9 + MAX_DEPTH]  # the list at level 65
    assert read_yaml(nested(MAX_DEPTH)).data["x-deep"] is not None


# ---------------------------------------------------------------- size and lines


def test_a_rule_file_over_1_mib_is_refused_from_its_size(tmp_path):
    path = tmp_path / "big.yaml"
    values = "".join("      - 1.0\n" for _ in range(MAX_RULE_FILE_BYTES // 12 + 1))  # one value a line
    path.write_text(RULE + "tests:\n  - name: long\n    series:\n      loss:\n" + values + "    expect: []\n")
    size = path.stat().st_size
    problems, seconds = read_in_child(path)
    assert problems == [{"code": "E001", "where": None,
                         "message": f"the file is {size:,} bytes; rule files are at most 1 MiB (1,048,576 bytes)",
                         "hint": "a rule file holds one rule: keep its test series to the few dozen values that "
                                 "show it fire or stay silent"}]
    assert seconds < 1


def test_a_rule_file_of_exactly_1_mib_is_read(tmp_path):
    path = tmp_path / "full.yaml"
    padding = MAX_RULE_FILE_BYTES - len(RULE)
    comments = "".join(f"# {'x' * 997}\n" for _ in range(padding // 1000))
    path.write_text(RULE + comments + "#" * (padding - len(comments) - 1) + "\n")
    assert path.stat().st_size == MAX_RULE_FILE_BYTES
    problems, _ = read_in_child(path)
    assert problems == []


def test_a_2_gb_file_of_nul_bytes_is_never_read(tmp_path):
    path = tmp_path / "nul.yaml"
    with path.open("wb") as sparse:
        sparse.truncate(2 * 1024**3)  # a sparse file: no block of it is written
    problems, seconds = read_in_child(path)  # 2 GB read into memory would break the 1.5 GB limit
    assert [p["code"] for p in problems] == ["E001"]
    assert problems[0]["message"].startswith("the file is 2,147,483,648 bytes; ")
    assert seconds < 1


def test_a_line_longer_than_the_limit_is_e002_at_its_line(tmp_path):
    long_line = "x-data: " + "a" * MAX_LINE_LENGTH + "\n"
    path = tmp_path / "long.yaml"
    path.write_text(RULE + long_line)
    problems, _ = read_in_child(path)
    assert problems == [{"code": "E002", "where": [7, 1],
                         "message": f"this line has {len(long_line) - 1:,} characters; rule files have lines of at "
                                    f"most {MAX_LINE_LENGTH:,}",
                         "hint": "break long lists over several lines (one value per line)"}]
    at_the_limit = "x-data: " + "a" * (MAX_LINE_LENGTH - len("x-data: ")) + "\n"
    (tmp_path / "ok.yaml").write_text(RULE + at_the_limit)
    assert read_in_child(tmp_path / "ok.yaml")[0] == []


# ---------------------------------------------------------------- FIFOs and devices


@needs_fifo
def test_a_fifo_is_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it for reading would block until a writer comes
    problems, _ = read_in_child(tmp_path / "pipe.yaml")
    assert problems == [{"code": "E001", "where": None, "message": "not a regular file: this is a FIFO (named pipe)",
                         "hint": "give the path of a .yaml file; a pipe or device could block or never end"}]
    result, _ = lint_in_child(tmp_path / "pipe.yaml")
    assert result.returncode == 1 and "[E001]" in result.stdout and "FIFO" in result.stdout


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_a_device_is_refused(tmp_path, device):
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    (tmp_path / "device.yaml").symlink_to(device)  # read to its end, it never ends
    problems, seconds = read_in_child(tmp_path / "device.yaml")
    assert [(p["code"], p["message"]) for p in problems] == [
        ("E001", f"not a regular file: this is a character device ({os.path.realpath(device)})")]
    assert seconds < 1
    result, _ = lint_in_child(tmp_path / "device.yaml")
    assert result.returncode == 1 and "[E001]" in result.stdout and "character device" in result.stdout


@needs_fifo
def test_a_directory_walk_passes_over_fifos_and_devices(tmp_path):
    # discover() keeps regular files only (is_file() follows links): a pipe or device named *.yaml in a
    # rule directory is neither opened nor read, and the rules beside it are checked.
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "good.yaml").write_text(RULE)
    result, _ = lint_in_child(tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("1 file(s) checked: no problems.")


# ---------------------------------------------------------------- ruledsl new


def new_in_child(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    result, seconds = child(RUN_CLI, "new", name, "-t", "grpo", "-m", "reward", "--dir", "r", *args, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    return result, seconds


def written_cases(path: Path) -> list[dict]:
    cases = yaml.safe_load(path.read_text())["tests"]
    assert all(len(values) <= MAX_CASE_VALUES for case in cases for values in case["series"].values())
    return cases


def test_new_refuses_a_window_beyond_the_language_bound(tmp_path):
    result, _ = new_in_child(tmp_path, "huge", "-c", "< 0.5", "-w", "1000000000")
    assert result.returncode == 2
    assert "window" in result.stderr and "at most 100,000" in result.stderr
    assert not (tmp_path / "r").exists()


def test_new_with_the_largest_window_writes_a_small_file_whose_cases_pass(tmp_path):
    result, seconds = new_in_child(tmp_path, "wide", "-c", "< 0.5", "-w", "100000")
    assert result.returncode == 0 and seconds < 15  # was 28 s and a 3.2 MB file
    path = tmp_path / "r" / "grpo" / "wide.yaml"
    assert path.stat().st_size < 4096
    assert [case["expect"] for case in written_cases(path)] == [[]]  # the silent case only
    text = path.read_text()
    comment = text.replace("\n# ", " ")  # the comment's lines, joined
    assert "\n# No firing case: " in text and "need 100,000 values of reward" in comment
    assert "A firing case needs 100,000+ values" in comment
    assert ruledsl("test", str(path)).stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_new_with_a_very_long_for_logs_the_case_steps_apart(tmp_path):
    result, seconds = new_in_child(tmp_path, "patient", "-c", "< 0.5 for 1000000000 steps")
    assert result.returncode == 0 and seconds < 15  # was a MemoryError
    path = tmp_path / "r" / "grpo" / "patient.yaml"
    cases = written_cases(path)
    assert [bool(case["expect"]) for case in cases] == [True, False]
    assert all(len(case["steps"]) == len(case["series"]["reward"]) for case in cases)
    assert cases[0]["expect"][0]["first_step"] >= 1_000_000_000 - 1
    assert ruledsl("test", str(path)).stdout.splitlines()[-1] == "2 passed, 0 failed"


def test_new_with_an_ordinary_window_keeps_its_firing_case(tmp_path):
    result, _ = new_in_child(tmp_path, "medium", "-c", "drop(50%)", "-w", "30")
    assert result.returncode == 0
    path = tmp_path / "r" / "grpo" / "medium.yaml"
    assert [bool(case["expect"]) for case in written_cases(path)] == [True, False]
    assert "No firing case" not in path.read_text()
    assert ruledsl("test", str(path)).stdout.splitlines()[-1] == "2 passed, 0 failed"
