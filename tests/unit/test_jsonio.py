"""jsonio's depth check agrees with the parsed value's depth, whatever the strings hold."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fhir_server import jsonio

_TEXT = st.text(alphabet=st.sampled_from('ab[]{}"\\\n\u00b2'), max_size=8)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=30,
)


@given(_JSON)
def test_depth_of_the_text_is_the_depth_of_the_value(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)):
        assert jsonio.json_depth(text) == jsonio.value_depth(value)


def test_loads_request_refuses_beyond_the_limit_and_parses_up_to_it() -> None:
    assert jsonio.loads_request("[" * 100 + "]" * 100) is not None
    try:
        jsonio.loads_request("[" * 101 + "]" * 101)
    except jsonio.TooDeep as error:
        assert "100 levels" in str(error)
    else:
        raise AssertionError("101 levels were accepted")
