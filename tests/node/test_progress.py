"""``TaskProgress``: the progress events a viewer connecting mid-question replays (``node.snapshots``)."""

from __future__ import annotations

from symphony.node.bus import EventBus
from symphony.node.snapshots import TaskProgress


def test_keeps_the_progress_of_tasks_in_flight_until_their_record_is_final() -> None:
    bus, progress = EventBus(clock=lambda: 0.0), TaskProgress()

    def publish(kind: str, data: dict[str, object]) -> None:  # as the node does: the bus's event, kept
        progress.observe(bus.publish(kind, data))

    publish("task_submitted", {"task_id": "a", "status": "running"})  # a record: the snapshot has it already
    publish("task_started", {"task": "a", "planners": ["p0", "p1"]})
    publish("plan_made", {"task": "b/c0", "steps": ["x"], "plan": "ok"})  # a chain planned here for another node
    publish("step_assigned", {"task": "a/c1", "step": 0, "question": "q", "executor": "e", "score": 0.5})
    publish("record_merged", {"agent": "p0"})
    assert [(e["type"], e["data"]["task"]) for e in progress.events()] == [
        ("task_started", "a"), ("plan_made", "b/c0"), ("step_assigned", "a/c1")]  # in published order
    publish("task_record", {"task_id": "a", "status": "done"})
    assert [e["data"]["task"] for e in progress.events()] == ["b/c0"]
    assert progress.dropped == 0


def test_bounded_and_what_does_not_fit_is_counted() -> None:
    bus, progress = EventBus(clock=lambda: 0.0), TaskProgress(max_tasks=2, max_events=2)
    for task in ("a", "a", "a", "b", "c"):
        progress.observe(bus.publish("step_finished", {"task": f"{task}/c0", "step": 0}))
    assert [e["data"]["task"] for e in progress.events()] == ["b/c0", "c/c0"]  # the oldest task pushed out
    assert progress.dropped == 3  # a's third event (over max_events), then a's two kept ones
