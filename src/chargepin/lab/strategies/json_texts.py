"""JSON values and texts, with the ones that trip parsers (deep nesting, huge integers,
non-finite numbers, lone surrogates, duplicate keys, truncations)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


JSON_VALUES = st.recursive(JSON_SCALARS, _json_containers, max_leaves=12)
JSON_TRAPS = st.one_of(
    st.integers(10, 100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(10, 100_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.integers(4000, 6000).map(lambda digits: "1" + "0" * digits),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '{"a":1,"a":2}']),
    st.sampled_from(["", " ", "\ufeff{}", "null", "[]", "{}", "{", '"', "tru"]),
)
"""JSON texts that trip parsers: nesting past the recursion limit, 6000-digit integers (over
Python's int/str limit), non-finite numbers, lone surrogates, duplicate keys, truncations."""


def json_texts(shaped: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[str]:
    """JSON text: any value, `shaped` values when given (objects with the right keys and
    wrong values), and the traps."""
    values = JSON_VALUES if shaped is None else st.one_of(shaped, JSON_VALUES)
    return st.one_of(values.map(json.dumps), JSON_TRAPS)
