"""Graph checks on plain links, independent of YAML."""

from __future__ import annotations

from orchestrator.spec.graph import StepLinks, analyze


def links(**steps: tuple[list[str], list[str]]) -> dict[str, StepLinks]:
    return {name: StepLinks(tuple(n), tuple(a)) for name, (n, a) in steps.items()}


def messages(steps: dict[str, StepLinks]) -> list[str]:
    return [issue.message for issue in analyze(steps).issues]


def test_valid_graph_topology() -> None:
    report = analyze(links(a=(["b", "c"], []), b=([], []), c=(["d"], []), d=([], ["b"])))
    assert report.issues == []
    topo = report.topology
    assert topo is not None
    assert topo.entry == "a"
    assert topo.order == ("a", "b", "c", "d")
    assert topo.predecessors["d"] == ("b", "c")
    assert topo.successors["a"] == ("b", "c")


def test_cycle_is_shown_from_its_first_step_in_file_order() -> None:
    steps = links(a=(["b"], []), b=(["c"], []), c=(["d"], []), d=(["b"], []))
    report = analyze(steps)
    assert [i.message for i in report.issues] == ["cycle: b -> c -> d -> b"]
    assert report.issues[0].path == ("steps", "d", "next", 0)  # the edge closing the cycle


def test_one_issue_per_cycle() -> None:
    steps = links(a=(["b", "d"], []), b=(["c"], []), c=(["b"], []), d=(["e"], []), e=(["d"], []))
    assert messages(steps) == ["cycle: b -> c -> b", "cycle: d -> e -> d"]


def test_no_entry_is_reported_with_the_cycle() -> None:
    assert messages(links(a=(["b"], []), b=(["a"], []))) == [
        "cycle: a -> b -> a (and no entry step: every step has a predecessor)"
    ]


def test_several_entries_and_unreachable() -> None:
    assert messages(links(a=([], []), b=([], []))) == [
        "step 'b' has no predecessor, but 'a' is already the entry step "
        "(a pipeline has exactly one; connect it with next or after)"
    ]


def test_typo_is_reported_once() -> None:
    steps = links(a=(["bb"], []), b=(["c"], []), c=([], []))
    assert messages(steps) == ["unknown step 'bb' in next (did you mean 'b'?)"]


def test_unknown_reference_without_suggestion() -> None:
    steps = links(a=([], ["zzz"]))
    assert messages(steps) == ["unknown step 'zzz' in after"]


def test_incomplete_links_skip_reachability() -> None:
    steps = {"a": StepLinks(), "b": StepLinks(complete=False)}
    assert messages(steps) == []
    assert analyze(steps).topology is None


def test_empty() -> None:
    report = analyze({})
    assert report.issues == [] and report.topology is None
