"""Routing rules: first match wins, `set` reaches the output as item.route, `to` moves the event to
another output (bypassing its filter, not delivered here), and a rule pointing nowhere fails at load."""

from __future__ import annotations

import dataclasses

import gevent
import orjson
import pytest

from agent.config import parse_config
from agent.config_loader import ConfigError
from outputs.base import FilterConfig, OutputConfig, RouteConfig
from outputs.drain import Drain
from outputs.routing import NOT_HERE, check_routes, compile_selector
from spool.store import Spool
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, make_event, stop, wait_until


@dataclasses.dataclass
class AnyRouteConfig(OutputConfig):
    """A fake output that reads whatever route keys a rule sets (the routing rules are under test
    here, not one vendor's keys; the base refuses every key, as file and stdout do)."""

    def check_route(self, values: dict[str, str]) -> None:
        pass


def outputs() -> dict[str, OutputConfig]:
    return {
        "siem": AnyRouteConfig(type="fake", routes=[
            RouteConfig(when=FilterConfig(min_severity="critical"), set={"urgency": "page"}, to="pager"),
            RouteConfig(when=FilterConfig(denied_only=True), set={"index": "blocks"}),
            RouteConfig(when=FilterConfig(min_severity="high"), set={"index": "never-reached"}),
        ]),
        "pager": AnyRouteConfig(type="fake", filter=FilterConfig(event_types=["nothing-matches"])),
        "archive": AnyRouteConfig(type="fake"),
    }


def test_first_matching_rule_sets_route_values():
    select = compile_selector("siem", outputs())
    assert select(make_event(1, severity="high", allowed=False)) == {"index": "blocks"}
    assert select(make_event(2, severity="info")) is None  # no rule matched: delivered, no values


def test_to_moves_the_event_to_the_other_output_bypassing_its_filter():
    outs = outputs()
    siem, pager = compile_selector("siem", outs), compile_selector("pager", outs)
    critical = make_event(1, severity="critical", allowed=False)
    assert siem(critical) is NOT_HERE
    assert pager(critical) == {"urgency": "page"}
    assert pager(make_event(2, severity="high", allowed=False)) is NOT_HERE  # pager's own filter


def test_an_output_without_filter_or_routes_needs_no_selector():
    assert compile_selector("archive", outputs()) is None


def test_routes_apply_only_to_events_the_source_filter_accepts():
    outs = outputs()
    outs["siem"].filter = FilterConfig(actions=["egress"])
    pager = compile_selector("pager", outs)
    assert pager(make_event(1, severity="critical", action="egress")) == {"urgency": "page"}
    assert pager(make_event(2, severity="critical", action="shell")) is NOT_HERE


def test_check_routes_names_the_output_and_the_rule():
    outs = outputs()
    outs["siem"].routes[1].to = "nowhere"
    with pytest.raises(ValueError, match=r"\[outputs.siem\] routes\[1\].to: unknown output 'nowhere'"):
        check_routes(outs)
    outs["siem"].routes[1].to = "siem"
    with pytest.raises(ValueError, match="cannot route to itself"):
        check_routes(outs)


def chain(order: str = "abc") -> dict[str, OutputConfig]:
    """a sends critical events to b, b sends denials to c; c's own filter takes nothing."""
    defs = {
        "a": AnyRouteConfig(type="fake", routes=[RouteConfig(when=FilterConfig(min_severity="critical"),
                                                             set={"from": "a"}, to="b")]),
        "b": AnyRouteConfig(type="fake", routes=[RouteConfig(when=FilterConfig(denied_only=True),
                                                             set={"from": "b"}, to="c")]),
        "c": AnyRouteConfig(type="fake", filter=FilterConfig(event_types=["nothing-matches"])),
    }
    return {n: defs[n] for n in order}


def delivered_by(outs: dict[str, OutputConfig], ev: dict) -> dict[str, object]:
    got = {n: compile_selector(n, outs)(ev) for n in outs}
    return {n: r for n, r in got.items() if r is not NOT_HERE}


@pytest.mark.parametrize("order", ["abc", "cba", "bca"])
def test_an_event_redirected_to_b_is_not_redirected_again_by_bs_rules(order):
    """Docs: "the target's own rules do not apply to it (no chains)". Before, c's selector counted
    b's rule for every event b's filter accepted, so a critical denial went to b *and* c."""
    outs = chain(order)
    assert delivered_by(outs, make_event(1, severity="critical", allowed=False)) == {"b": {"from": "a"}}
    # what a did not redirect, b's rules still route: a denial that is not critical goes to c
    assert delivered_by(outs, make_event(2, severity="high", allowed=False)) == {"a": None,
                                                                                 "c": {"from": "b"}}
    assert delivered_by(outs, make_event(3, severity="info")) == {"a": None, "b": None}


def test_a_loop_of_routing_rules_is_an_error_naming_the_rule():
    crit = FilterConfig(min_severity="critical")
    outs = {
        "a": OutputConfig(type="fake", routes=[RouteConfig(when=crit, to="b")]),
        "x": OutputConfig(type="fake", routes=[RouteConfig(when=crit, to="a")]),
        "b": OutputConfig(type="fake", routes=[RouteConfig(when=FilterConfig(denied_only=True), to="c"),
                                               RouteConfig(when=crit, to="a")]),
        "c": OutputConfig(type="fake"),
    }
    msg = r"\[outputs.a\] routes\[0\].to: routing rules form a loop \(a -> b -> a\)"
    with pytest.raises(ValueError, match=msg):
        check_routes(outs)
    with pytest.raises(ValueError, match=msg):  # before, both a and b delivered a critical event
        compile_selector("c", outs)
    outs["b"].routes.pop()
    check_routes(outs)  # x -> a -> b -> c is a chain, not a loop


def test_a_route_to_a_disabled_output_is_an_error_naming_rule_and_output():
    """No drain runs for a disabled output and its cursor holds back no retention, so the events a
    rule sent there were delivered by nobody, never reached the DLQ, and were pruned later."""
    outs = outputs()
    outs["pager"].enabled = False
    with pytest.raises(ValueError, match=r"\[outputs.siem\] routes\[0\].to: output 'pager' is disabled"):
        check_routes(outs)
    outs["pager"].enabled = True
    outs["siem"].enabled = False  # a disabled output's rules still redirect: that is fine
    check_routes(outs)


TOML = """
[agent]
data_dir = "/tmp/x"
[inputs.i]
type = "file"
paths = ["/tmp/x/*.jsonl"]
[outputs.siem]
type = "splunk_hec"
endpoint = "http://127.0.0.1:8088"
token = "t"
[[outputs.siem.routes]]
when = {{ min_severity = "critical" }}
to = "{to}"
[[outputs.siem.routes]]
when = {{ event_types = ["guard_block"] }}
set = {{ index = "blocks", sourcetype = "clawd:block" }}
[outputs.pager]
type = "stdout"
"""


def test_routes_load_from_toml_and_an_unknown_target_names_file_and_key():
    cfg_ = parse_config(TOML.format(to="pager"), "agent.toml")
    routes = cfg_.outputs["siem"].routes
    assert routes[0].when.min_severity == "critical" and routes[0].to == "pager"
    assert routes[1].set == {"index": "blocks", "sourcetype": "clawd:block"}
    with pytest.raises(ConfigError, match=r"^agent.toml: \[outputs.siem\] routes\[0\].to: unknown output "
                                          r"'pagr' \(known: pager, siem\)"):
        parse_config(TOML.format(to="pagr"), "agent.toml")


def test_check_config_rejects_a_route_to_a_disabled_output(tmp_path):
    from click.testing import CliRunner

    from agent.cli import cli

    path = tmp_path / "agent.toml"
    path.write_text(TOML.format(to="pager"))
    assert CliRunner().invoke(cli, ["check-config", "-c", str(path)]).exit_code == 0
    path.write_text(TOML.format(to="pager") + "enabled = false\n")
    res = CliRunner().invoke(cli, ["check-config", "-c", str(path)])
    assert res.exit_code != 0
    assert (f"{path}: [outputs.siem] routes[0].to: output 'pager' is disabled, so the events this "
            "rule sends there would be delivered by nobody") in res.output


def test_two_drains_split_the_stream_as_the_rules_say(tmp_path):
    spool = Spool(str(tmp_path / "s.db"))
    fill(spool, 6, severity="info")
    fill(spool, 3, start=6, severity="high", allowed=False)
    fill(spool, 2, start=9, severity="critical", allowed=False)
    outs = outputs()
    got: dict[str, list[tuple[int, dict | None]]] = {"siem": [], "pager": []}

    def recorder(name):
        def rule(batch):
            got[name].extend((orjson.loads(i.body)["n"], i.route) for i in batch)
        return rule

    drains = []
    for name in ("siem", "pager"):
        out = Fake(name, cfg(routes=outs[name].routes, filter=outs[name].filter), rule=recorder(name))
        drains.append(Drain(out, spool, spool.reader(), selector=compile_selector(name, outs)))
    greenlets = [gevent.spawn(d.run) for d in drains]
    wait_until(lambda: caught_up(spool, "siem")() and caught_up(spool, "pager")())
    for d, g in zip(drains, greenlets, strict=True):
        stop(d, g)
    spool.close()
    assert got["siem"] == [(n, None) for n in range(6)] + [(n, {"index": "blocks"}) for n in (6, 7, 8)]
    assert got["pager"] == [(9, {"urgency": "page"}), (10, {"urgency": "page"})]
    assert drains[0].stats.filtered == 2 and drains[1].stats.filtered == 9


VENDOR_TOML = """
[agent]
data_dir = "/tmp/x"
[inputs.i]
type = "file"
paths = ["/tmp/x/*.jsonl"]
[outputs.es]
type = "elasticsearch"
hosts = ["http://127.0.0.1:9200"]
[outputs.splunk]
type = "splunk_hec"
endpoint = "http://127.0.0.1:8088"
token = "t"
[[outputs.{src}.routes]]
when = {{ min_severity = "critical" }}
set = {set}
{to}
"""


@pytest.mark.parametrize(("src", "set_", "to", "error"), [
    ("es", '{ index = "Clawd-Alerts" }', "", r"\[outputs.es\] routes\[0\].set: invalid index name "
                                              r"'Clawd-Alerts'"),
    ("es", '{ namespace = "Prod" }', "", r"routes\[0\].set: invalid index name "
                                         r"'logs-clawdstrike.security-Prod'"),
    ("splunk", '{ index = "Clawd-Alerts" }', 'to = "es"',  # checked by the receiving output
     r"\[outputs.splunk\] routes\[0\].set: invalid index name 'Clawd-Alerts'"),
    ("es", '{ sourcetype = "clawd:alert" }', "", r"routes\[0\].set: unknown key 'sourcetype' "
                                                 r"\(elasticsearch reads: index, dataset, namespace\)"),
    ("splunk", '{ idx = "alerts" }', "", r"routes\[0\].set: unknown key 'idx' \(splunk_hec reads: "
                                         r"index, sourcetype, source, host\)"),
])
def test_route_values_the_receiving_vendor_cannot_take_are_a_config_error(src, set_, to, error):
    """Before, such a rule loaded fine and its events were refused one by one at delivery (400
    invalid_index_name_exception: DLQ), or its values were silently ignored (an unknown key)."""
    with pytest.raises(ConfigError, match=error):
        parse_config(VENDOR_TOML.format(src=src, set=set_, to=to), "agent.toml")


def test_valid_route_values_load():
    for src, set_, to in (("es", '{ index = "clawd-alerts-%Y.%m" }', ""),
                          ("es", '{ dataset = "clawd.alerts" }', ""),
                          ("splunk", '{ index = "clawd_blocks", sourcetype = "clawdstrike:block" }', ""),
                          ("splunk", '{ index = "clawd-alerts" }', 'to = "es"')):
        parse_config(VENDOR_TOML.format(src=src, set=set_, to=to), "agent.toml")


@pytest.mark.parametrize(("output", "table"), [("file", 'path = "/tmp/x/out.jsonl"'), ("stdout", "")])
def test_route_values_for_an_output_that_reads_none_are_a_config_error(output, table):
    """file and stdout read no route values: a rule's `set` reaching them was accepted and ignored."""
    text = VENDOR_TOML.format(src="es", set='{ index = "alerts" }', to='to = "local"')
    text += f'[outputs.local]\ntype = "{output}"\n{table}\n'
    with pytest.raises(ConfigError, match=rf"\[outputs.es\] routes\[0\].set: unknown key 'index' "
                                          rf"\({output} reads no route values\)"):
        parse_config(text, "agent.toml")
    parse_config(text.replace('set = { index = "alerts" }', "set = {}"), "agent.toml")  # `to` alone
