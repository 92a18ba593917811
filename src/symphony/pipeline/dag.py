"""A plan's dependency graph, pure: which steps wait for which (issue #21, DAG plans).

A plan's ``depends_on`` has one entry per step: the indices of the steps whose results it needs.
The old linear chain is ``linear(n)``: each step depends on the one before it. The chain driver
runs a step once everything it depends on has settled, and sends it the results of its
``ancestors`` (everything it depends on, directly or through other steps), so a linear plan's
step still sees every earlier answer, exactly as before DAG plans existed.

``waits_for_cycle`` is the plan-time deadlock check (the issue's waits-for check): a cycle means
no step of it can ever start. ``topological_order`` is how a plan whose steps reference later ones
is put in an order the chain can run.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

Dependencies = tuple[tuple[int, ...], ...]


def linear(count: int) -> Dependencies:
    """The old chain's graph for ``count`` steps: each depends on the one before it."""
    return tuple(() if i == 0 else (i - 1,) for i in range(count))


def is_linear(deps: Sequence[Sequence[int]]) -> bool:
    """Whether ``deps`` is exactly the old chain's graph."""
    return tuple(tuple(d) for d in deps) == linear(len(deps))


def waits_for_cycle(deps: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
    """A cycle of steps each waiting for the next (indices, in waiting order), or None when there is none.

    ``deps`` must hold only indices in range. Iterative depth-first search: a plan is small, but a
    peer's plan is hostile input and recursion depth is not ours to spend."""
    state = [0] * len(deps)  # 0 unseen, 1 on the current path, 2 finished
    for root in range(len(deps)):
        if state[root]:
            continue
        path: list[int] = [root]
        pending: list[list[int]] = [list(deps[root])]
        state[root] = 1
        while path:
            if not pending[-1]:
                state[path.pop()] = 2
                pending.pop()
                continue
            nxt = pending[-1].pop()
            if state[nxt] == 1:
                return tuple(path[path.index(nxt):])
            if state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                pending.append(list(deps[nxt]))
    return None


def topological_order(deps: Sequence[Sequence[int]]) -> list[int]:
    """The steps in an order where each comes after what it depends on, otherwise as given
    (Kahn's algorithm, lowest index first). ``deps`` must be acyclic (``waits_for_cycle``)."""
    waiting = [len(set(d)) for d in deps]
    dependents: list[list[int]] = [[] for _ in deps]
    for step, needs in enumerate(deps):
        for need in set(needs):
            dependents[need].append(step)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        step = heapq.heappop(ready)
        order.append(step)
        for dependent in dependents[step]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) != len(deps):
        raise ValueError("the dependency graph has a cycle")
    return order


def ancestors(deps: Sequence[Sequence[int]], step: int) -> tuple[int, ...]:
    """Every step ``step`` depends on, directly or through others, in index order."""
    seen: set[int] = set()
    todo = list(deps[step])
    while todo:
        need = todo.pop()
        if need not in seen:
            seen.add(need)
            todo.extend(deps[need])
    return tuple(sorted(seen))


def check_runnable(deps: Sequence[Sequence[int]]) -> None:
    """``ValueError`` unless ``deps`` is a graph the chain driver can run: each step depends only
    on earlier ones and every step leads to the last (so no result is computed and then lost)."""
    for step, needs in enumerate(deps):
        if any(not 0 <= need < step for need in needs):
            raise ValueError(f"step {step} may depend only on earlier steps, not {tuple(needs)}")
    if deps and len(ancestors(deps, len(deps) - 1)) != len(deps) - 1:
        raise ValueError("every step must lead to the last one")


__all__ = ["Dependencies", "ancestors", "check_runnable", "is_linear", "linear", "topological_order",
           "waits_for_cycle"]
