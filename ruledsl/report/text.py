"""Text from logs and rule files made safe to show, whatever it holds.

Run ids are folder and file names, metric keys are whatever a log wrote, and messages
interpolate both: any of them can hold an escape sequence (`\\x1b[2J` clears a terminal),
a bell, a newline that would split a table row or a CSV record, or a bidirectional
override. Every report but JSON (which escapes them itself) shows such characters as
Python escapes (`\\x1b`, `\\n`, `\\u202e`), so that a report can be printed, cat'ed or
pasted anywhere and still says exactly what the log held.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """Text with control characters (escape sequences, newlines, bidi overrides, lone
    surrogates of undecodable file names) written as \\x.. escapes."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def one_line(text: object) -> str:
    """Prose from a rule file (a description, a condition written over several lines of
    YAML) on one line: line breaks become spaces, any other control character is escaped."""
    return printable(" ".join(str(text).splitlines()))
