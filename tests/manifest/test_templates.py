"""Tests for sharebatch.templates: the small `{name}` / `{group.name}` template language."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from sharebatch.errors import TemplateError, UsageError
from sharebatch.manifest.fields import DownloadName, NameTemplate
from sharebatch.manifest.templates import (
    OBJECT_VARIABLES,
    escape,
    names,
    object_renderer,
    object_variables,
    render,
    render_object,
)

VARS = {"period.year": "2026", "period.quarter": "3", "recipient.id": "globex"}


def test_variables_are_substituted() -> None:
    """`{group.name}` and `{name}` are replaced by their values, the rest is kept as written."""
    assert render("reports/{period.year}/Q{period.quarter}/", VARS) == "reports/2026/Q3/"
    assert render("x-{a}-{b_2}", {"a": "1", "b_2": "2"}) == "x-1-2"
    assert render("no variables at all/", {}) == "no variables at all/"
    assert render("", VARS) == ""


def test_doubled_braces_are_literal_braces() -> None:
    """`{{` and `}}` render as `{` and `}`, also right next to a variable."""
    assert render("{{literal}}", {}) == "{literal}"
    assert render("{{{recipient.id}}}", VARS) == "{globex}"
    assert render("a}}b{{c", {}) == "a}b{c"


def test_values_are_not_templates() -> None:
    """A value containing braces is inserted as is, never interpreted as a template."""
    assert render("{recipient.id}", {"recipient.id": "{period.year}"}) == "{period.year}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("reports/{period.year", "'{' at character 9 is never closed", id="unclosed"),
        pytest.param("{", "'{' at character 1 is never closed", id="lone-open"),
        pytest.param("a}b", "single '}' at character 2", id="lone-close"),
        pytest.param("{a b}", "'{a b}' at character 1 is not a variable", id="space"),
        pytest.param("{}", "'{}' at character 1 is not a variable", id="empty"),
        pytest.param("{a.b.c}", "'{a.b.c}' at character 1 is not a variable", id="two-dots"),
        pytest.param("{1st}", "is not a variable", id="digit-first"),
        pytest.param("{a-b}", "is not a variable", id="dash"),
        pytest.param("{a{b}}", "'{' at character 3 is inside another variable", id="nested"),
        pytest.param("{{a}", "single '}' at character 4", id="escape-then-close"),
    ],
)
def test_any_other_brace_is_a_syntax_error(template: str, message: str) -> None:
    """Unbalanced, empty, nested or non-name braces raise TemplateError saying where."""
    with pytest.raises(TemplateError, match=re.escape(message)):
        render(template, VARS)
    with pytest.raises(TemplateError):
        names(template)


def test_template_error_is_a_usage_error_that_validators_turn_into_issues() -> None:
    """TemplateError sits in the one tree (exit 2); every manifest field holding a template
    turns it into a ValueError, the only kind pydantic makes a located issue of."""
    assert issubclass(TemplateError, UsageError)
    assert not issubclass(TemplateError, ValueError)
    assert TemplateError("x").exit_code == 2
    for field in (DownloadName, NameTemplate):
        with pytest.raises(ValidationError, match=re.escape("'{' at character 1 is never closed")):
            TypeAdapter(field).validate_python("{stem")


def test_unknown_variable_names_it_and_lists_the_known_ones() -> None:
    """An unknown variable is an error naming it and every known variable, never a literal."""
    with pytest.raises(TemplateError) as info:
        render("{period.quater}", VARS, keep={"basename"})
    assert str(info.value) == (
        "unknown template variable {period.quater}; known: {period.year}, {period.quarter},"
        " {recipient.id}, {basename}"
    )


def test_names_lists_the_variables_used() -> None:
    """names() gives each variable once, ignoring escaped braces."""
    assert names("{a}/{b.c}/{a}{{d}}") == {"a", "b.c"}
    assert names("plain") == frozenset()


def test_keep_leaves_names_in_place_and_braces_escaped() -> None:
    """With keep, kept names stay as `{name}` and literal braces stay doubled: a template."""
    first = render("Q{period.quarter}-{{draft}}-{stem}{ext}", VARS, keep=OBJECT_VARIABLES)
    assert first == "Q3-{{draft}}-{stem}{ext}"
    assert render_object(first, "a/report.pdf") == "Q3-{draft}-report.pdf"


def test_keep_escapes_braces_in_substituted_values() -> None:
    """A value with braces survives the second stage literally instead of being read as a name."""
    first = render("{recipient.id}-{basename}", {"recipient.id": "{x}"}, keep=OBJECT_VARIABLES)
    assert first == "{{x}}-{basename}"
    assert render_object(first, "k/a.csv") == "{x}-a.csv"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("reports/2026/Q3/summary.pdf", ("summary.pdf", "summary", ".pdf")),
        ("archive.tar.gz", ("archive.tar.gz", "archive.tar", ".gz")),
        ("a/README", ("README", "README", "")),
        ("a/.env", (".env", ".env", "")),
        ("folder/", ("", "", "")),
    ],
)
def test_object_variables(key: str, expected: tuple[str, str, str]) -> None:
    """basename follows the last '/', ext is the last extension with its dot, stem the rest."""
    values = object_variables(key)
    assert values["key"] == key
    assert (values["basename"], values["stem"], values["ext"]) == expected
    assert set(values) == OBJECT_VARIABLES


def test_render_object_fills_object_variables_only() -> None:
    """render_object knows key/basename/stem/ext; any other variable is an error."""
    assert render_object("{stem}-v2{ext}", "x/report.pdf") == "report-v2.pdf"
    assert render_object("{key}", "x/y.csv") == "x/y.csv"
    with pytest.raises(TemplateError, match=r"unknown template variable \{period.year\}"):
        render_object("{period.year}-{basename}", "x/y.csv")


@given(st.text())
def test_escape_round_trips(text: str) -> None:
    """For any text, escape() gives a template that renders back to exactly that text."""
    assert render(escape(text), {}) == text
    assert names(escape(text)) == frozenset()


@given(
    st.sampled_from(["{basename}", "{key}", "{stem}{ext}", "x-{basename}", "{{b}}{key}", "a"]),
    st.text(max_size=20),
)
@settings(deadline=None)
def test_an_object_renderer_renders_as_render_object(template: str, key: str) -> None:
    """The renderer made once per template gives render_object's text for every key."""
    assert object_renderer(template)(key) == render_object(template, key)


def test_an_object_renderer_refuses_what_render_object_refuses() -> None:
    """An unknown variable is still an error, raised when a key is rendered."""
    with pytest.raises(TemplateError, match="unknown template variable"):
        object_renderer("{nope}")("a/b")
