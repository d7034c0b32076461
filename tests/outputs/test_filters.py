from outputs.base import FilterConfig
from outputs.filters import compile_filter


def ev(severity="info", allowed=True, event_type="policy_allow", guard=None, action="file_access",
       agent="a1"):
    decision = {"severity": severity, "allowed": allowed}
    if guard:
        decision["guard"] = guard
    return {"event_type": event_type, "decision": decision, "action": action, "agent": {"id": agent}}


def test_empty_filter_is_none_so_the_drain_can_skip_decoding():
    assert compile_filter(FilterConfig()) is None


def test_min_severity_uses_the_canonical_order():
    accept = compile_filter(FilterConfig(min_severity="high"))
    assert not accept(ev("medium"))
    assert accept(ev("high"))
    assert accept(ev("critical"))


def test_include_and_exclude_lists():
    accept = compile_filter(FilterConfig(event_types=["forbidden_path", "egress_blocked"],
                                         exclude_event_types=["egress_blocked"]))
    assert accept(ev(event_type="forbidden_path"))
    assert not accept(ev(event_type="egress_blocked"))
    assert not accept(ev(event_type="policy_allow"))
    assert compile_filter(FilterConfig(guards=["secret_leak"]))(ev(guard="secret_leak"))
    assert not compile_filter(FilterConfig(guards=["secret_leak"]))(ev(guard="forbidden_path"))
    assert not compile_filter(FilterConfig(actions=["egress"]))(ev(action="shell"))
    assert not compile_filter(FilterConfig(agents=["a2"]))(ev(agent="a1"))


def test_denied_only():
    accept = compile_filter(FilterConfig(denied_only=True))
    assert accept(ev(allowed=False))
    assert not accept(ev(allowed=True))


def test_an_event_type_the_mapper_never_produces_is_a_config_error():
    """Before, a typo (`guard-block`, `Guard_Block`, a hushd type like `check`) loaded fine and the
    filter then matched nothing: an `event_types` list dropped every event without a word."""
    import pytest

    from agent.config_loader import ConfigError, load_section

    for key in ("event_types", "exclude_event_types"):
        for bad in ("guard-block", "Guard_Block", "check"):
            with pytest.raises(ConfigError, match=rf"^x: {key}: unknown event type {bad!r} "
                                                  r"\(known: policy_violation, policy_allow, "):
                load_section(FilterConfig, {key: ["forbidden_path", bad]}, "x")
    assert load_section(FilterConfig, {"event_types": ["forbidden_path", "detection"]}, "x")
