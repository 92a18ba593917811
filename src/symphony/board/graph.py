"""A task's graph of sub-tasks and the waits-for check that keeps it acyclic.

A sub-task waits for the sub-tasks it depends on; a cycle in that waits-for relation is a deadlock
no schedule can resolve, so it is refused before any agent claims anything (``TaskGraph`` raises on
a cyclic plan; ``crdt.Board`` drops, and counts, a posted gap that would close a cycle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from symphony.errors import ConfigError


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of the waits-for relation ``deps`` (sub-task -> what it waits for), or None.

    Iterative three-colour depth-first search, so a long chain cannot hit Python's recursion limit.
    Dependencies on sub-tasks missing from ``deps`` are ignored here (``TaskGraph`` refuses them).
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(deps):
        if state.get(root):
            continue
        path: list[str] = [root]
        stack = [iter(sorted(deps[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif nxt in deps and state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt in deps and not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(deps[nxt])))
    return None


@dataclass(frozen=True)
class Subtask:
    """One node of the graph: an id, what it asks for, and the sub-tasks whose results it needs."""

    id: str
    spec: str = ""
    depends_on: tuple[str, ...] = ()
    cost: float = 1.0  # relative work, for schedulers and the bench (1 = one unit)


@dataclass(frozen=True)
class TaskGraph:
    """An acyclic graph of sub-tasks, in plan order.

    Raises:
        ConfigError: a duplicate id, a dependency on an unknown sub-task, or a cycle (named).
    """

    subtasks: tuple[Subtask, ...]
    _by_id: dict[str, Subtask] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {s.id: s for s in self.subtasks}
        if len(by_id) != len(self.subtasks):
            raise ConfigError("sub-task ids must be unique")
        for s in self.subtasks:
            missing = [d for d in s.depends_on if d not in by_id]
            if missing:
                raise ConfigError(f"sub-task {s.id!r} depends on unknown {missing!r}")
        cycle = find_cycle({s.id: s.depends_on for s in self.subtasks})
        if cycle:
            raise ConfigError(f"the plan's waits-for graph has a cycle: {' -> '.join(cycle)}")
        object.__setattr__(self, "_by_id", by_id)

    def __getitem__(self, subtask_id: str) -> Subtask:
        return self._by_id[subtask_id]

    def __contains__(self, subtask_id: object) -> bool:
        return subtask_id in self._by_id

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.subtasks]

    def critical_path(self) -> float:
        """The longest chain of costs: no number of agents finishes the graph faster."""
        finish: dict[str, float] = {}
        for s in self.subtasks:  # plan order is topological only if the planner made it so: resolve lazily
            finish[s.id] = self._finish(s.id, finish)
        return max(finish.values(), default=0.0)

    def _finish(self, subtask_id: str, memo: dict[str, float]) -> float:
        if subtask_id not in memo:
            s = self._by_id[subtask_id]
            memo[subtask_id] = s.cost + max((self._finish(d, memo) for d in s.depends_on), default=0.0)
        return memo[subtask_id]


__all__ = ["Subtask", "TaskGraph", "find_cycle"]
