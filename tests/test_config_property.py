"""Property-based tests of config validation: every field of SearchConfig, fed
random values of the wrong type or range, gives a ValueError that names the
field, never an error from deeper code. The fields are read from the dataclass
and the values drawn by declared type, so a field added later is covered too."""
import dataclasses
import json
import math
import re
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_core import SearchConfig

HINTS = typing.get_type_hints(SearchConfig)
FIELDS = [f.name for f in dataclasses.fields(SearchConfig)]
# numeric fields that may be negative; a new one that may must be listed here
SIGNED = {"alpha_mean"}  # the mean of alpha's initial values

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3),
    max_leaves=6)


def _base(name):
    hint = HINTS[name]
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


def _optional(name):
    return type(None) in typing.get_args(HINTS[name])


def wrong_type(name):
    """Values no field of this declared type accepts."""
    base = _base(name)
    others = {
        bool: st.integers() | st.floats() | st.text() | st.lists(st.booleans(), max_size=2),
        int: st.text().filter(lambda s: not _is_int(s)) | st.floats().filter(lambda x: not x.is_integer())
        | st.booleans() | st.lists(st.integers(), min_size=2, max_size=3) | st.dictionaries(st.text(), st.integers()),
        float: st.text().filter(lambda s: not _is_float(s)) | st.booleans()
        | st.lists(st.floats(), min_size=2, max_size=3) | st.dictionaries(st.text(), st.floats())
        | st.sampled_from([math.nan, math.inf, -math.inf]),
        str: st.integers() | st.floats() | st.booleans() | st.lists(st.text(), max_size=2)
        | st.dictionaries(st.text(), st.text(), max_size=2),
    }.get(base, st.floats() | st.booleans())  # another type (e.g. Intervention): a number is never one
    if not _optional(name):
        others = others | st.none()
    return others


def _is_int(s):
    try:
        int(s)
        return True
    except ValueError:
        return False


def _is_float(s):
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def any_value(name):
    """Values of the declared type, valid or not, and junk of any type."""
    base = _base(name)
    typed = {bool: st.booleans(), int: st.integers(-2**70, 2**70) | st.integers(-3, 40),
             float: st.floats() | st.floats(-2, 2), str: st.text(max_size=12)}.get(base, junk)
    return typed | junk | (st.none() if _optional(name) else st.nothing())


def _rejects_naming(name, value):
    with pytest.raises(ValueError) as err:
        SearchConfig.from_dict({name: value})
    assert re.search(rf"\b{name}\b", str(err.value)), f"{name}={value!r}: {err.value}"


every_field = pytest.mark.parametrize("name", FIELDS)


@every_field
@SETTINGS
@given(data=st.data())
def test_wrong_type_is_a_value_error_naming_the_field(name, data):
    _rejects_naming(name, data.draw(wrong_type(name)))


def _negative(name):
    return st.integers(max_value=-1) if _base(name) is int else st.floats(max_value=-1e-9, allow_infinity=False)


@pytest.mark.parametrize("name", [n for n in FIELDS if _base(n) in (int, float) and n not in SIGNED])
@SETTINGS
@given(data=st.data())
def test_negative_numbers_are_refused_naming_the_field(name, data):
    _rejects_naming(name, data.draw(_negative(name)))


@every_field
@SETTINGS
@given(data=st.data())
def test_any_value_is_accepted_or_refused_naming_the_field(name, data):
    """Never another exception; an accepted config has a key and survives a JSON round trip."""
    value = data.draw(any_value(name))
    try:
        c = SearchConfig.from_dict({name: value})
    except ValueError as err:
        assert re.search(rf"\b{name}\b", str(err)), f"{name}={value!r}: {err}"
        return
    assert len(c.key()) == 12
    assert SearchConfig.from_dict(json.loads(json.dumps(c.to_dict(), allow_nan=False))) == c


@every_field
@settings(SETTINGS, max_examples=10)
@given(data=st.data())
def test_replace_on_a_valid_config_names_the_bad_field(name, data):
    """The same through replace() on a config that differs from the defaults."""
    base = SearchConfig(data="synthetic", algorithm="darts", level="bi", cells=3, epochs=2, train_size=64)
    value = data.draw(wrong_type(name))
    with pytest.raises(ValueError) as err:
        base.replace(**{name: value})
    assert re.search(rf"\b{name}\b", str(err.value)), f"{name}={value!r}: {err.value}"
