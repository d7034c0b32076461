"""The redactor's prefilters only skip work: each must say yes to every string its patterns match.

``_may_hold_secret`` is generated as an unrolled ``or`` chain; it is compared with the plain loop over
``_SECRET_ANCHORS`` it replaced. The IPv4 prefilter (a digit, a dot, a digit) is checked against the
IPv4 pattern itself on generated matches and on arbitrary text.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.redact import (
    _HEX_ID,
    _IPV4,
    _SECRET_ANCHORS,
    BUILTIN_PATTERNS,
    BUILTIN_PREFILTERS,
    _may_hold_secret,
)

_SETTINGS = settings(max_examples=300, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _reference_may_hold_secret(s: str) -> bool:
    """The loop the generated prefilter replaced."""
    if not s.strip(_HEX_ID):
        return False
    low = s.lower()
    return any(anchor in low for anchor in _SECRET_ANCHORS)


SAMPLES = ["", "-", "01a216f8-c437-76f3-8ab0-363d678b43d8", "AKIAIOSFODNN7EXAMPLE", "/home/a/.ssh/id_rsa",
           "GitHub_PAT_x", "x://y", "Bearer abc", "PassWord", "İ", "ß", "api-KEY", "CREDENTIAL", "abcdef"]


def test_generated_secret_prefilter_equals_the_anchor_loop_on_samples() -> None:
    for s in SAMPLES + [a.upper() for a in _SECRET_ANCHORS] + list(_SECRET_ANCHORS):
        assert _may_hold_secret(s) is _reference_may_hold_secret(s), s


@_SETTINGS
@given(st.text() | st.text(alphabet=st.sampled_from("akisghubtpxo_lvesyj-:/rwdcnAKIS0123456789")))
def test_generated_secret_prefilter_equals_the_anchor_loop(text: str) -> None:
    assert _may_hold_secret(text) is _reference_may_hold_secret(text)


_IPV4_RE = re.compile(_IPV4)
_may_hold_ipv4 = BUILTIN_PREFILTERS["ipv4"]


@_SETTINGS
@given(st.from_regex(_IPV4_RE))
def test_the_ipv4_prefilter_passes_every_string_the_ipv4_pattern_matches(text: str) -> None:
    if _IPV4_RE.search(text):
        assert _may_hold_ipv4(text), text


@_SETTINGS
@given(st.text(alphabet=st.sampled_from("0123456789.: /-a\u0661")))
def test_the_ipv4_prefilter_never_hides_a_match_in_digit_soup(text: str) -> None:
    if BUILTIN_PATTERNS["ipv4"][0].has_match(text):
        assert _may_hold_ipv4(text), text


def test_the_ipv4_prefilter_skips_paths_and_versions_without_an_address() -> None:
    assert not _may_hold_ipv4("/home/agent/project/file-12.txt")
    assert not _may_hold_ipv4("no dots here")
    assert _may_hold_ipv4("10.0.0.1") and _may_hold_ipv4("v1.2")
