"""The positioned YAML loader: data, positions by path, duplicates and errors."""

import pytest

from gpuherd.yamlpos import Pos, YamlError, load_document, load_documents

TEXT = """\
a: 1
b:
  - x: 2
    y: [1, 2]
  - z: 3
c: {d: true, e: null}
"""


def test_data_and_positions() -> None:
    doc = load_document(TEXT, source="t.yaml")
    assert doc.data == {"a": 1, "b": [{"x": 2, "y": [1, 2]}, {"z": 3}], "c": {"d": True, "e": None}}
    assert doc.value_pos(("a",)) == Pos(1, 4)
    assert doc.key_pos(("a",)) == Pos(1, 1)
    assert doc.value_pos(("b", 0, "y", 1)) == Pos(4, 12)
    assert doc.key_pos(("b", 1, "z")) == Pos(5, 5)
    assert doc.value_pos(("c", "e")) == Pos(6, 17)
    # A path that does not exist resolves to its deepest existing ancestor.
    assert doc.value_pos(("b", 1, "missing")) == Pos(5, 5)
    assert doc.value_pos(("b", 7)) == Pos(3, 3)
    assert doc.has_path(("b", 0, "x"))
    assert not doc.has_path(("b", 0, "q"))


def test_duplicate_keys_are_reported_and_last_wins() -> None:
    doc = load_document("a: 1\nb: 2\na: 3\n", source="d.yaml")
    assert doc.data == {"a": 3, "b": 2}
    assert [(d.path, d.pos) for d in doc.duplicates] == [(("a",), Pos(3, 1))]
    assert doc.value_pos(("a",)) == Pos(3, 4)


def test_merge_keys_and_anchors() -> None:
    doc = load_document("base: &b {x: 1}\nchild:\n  <<: *b\n  y: 2\n", source="m.yaml")
    assert doc.data["child"] == {"x": 1, "y": 2}


def test_multiple_documents() -> None:
    docs = load_documents("a: 1\n---\nb: 2\n---\n", source="multi.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}, None]
    assert docs[1].start == Pos(3, 1)


def test_syntax_error_has_position() -> None:
    with pytest.raises(YamlError) as info:
        load_documents("a: [1, 2\nb: 3\n", source="bad.yaml")
    assert info.value.pos == Pos(2, 2)
    assert str(info.value).startswith("bad.yaml:2:2: ")


def test_one_document_expected() -> None:
    with pytest.raises(YamlError, match="expected one YAML document"):
        load_document("a: 1\n---\nb: 2\n", source="two.yaml")


def test_alias_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(YamlError, match="too many values"):
        load_document("\n".join(lines), source="bomb.yaml")


def test_non_scalar_key_is_an_error() -> None:
    with pytest.raises(YamlError, match="key must be a scalar"):
        load_document("? [a, b]\n: 1\n", source="k.yaml")


def test_empty_input_is_one_null_document() -> None:
    doc = load_document("", source="e.yaml")
    assert doc.data is None
    assert doc.start == Pos(1, 1)


def test_skipped_keys_are_left_out() -> None:
    text = "metadata:\n  name: a\n  managedFields:\n    - {manager: kubectl}\nspec: {x: 1}\n"
    doc = load_documents(text, source="s.yaml", skip_keys=frozenset({"managedFields"}))[0]
    assert doc.data == {"metadata": {"name": "a"}, "spec": {"x": 1}}
    assert doc.value_pos(("spec", "x")) == Pos(5, 11)


def test_keep_predicate_drops_documents() -> None:
    docs = load_documents(
        "kind: A\n---\nkind: B\n",
        source="k.yaml",
        keep=lambda node: "B" in str([v.value for _k, v in node.value]),
    )
    assert [d.data for d in docs] == [{"kind": "B"}]
