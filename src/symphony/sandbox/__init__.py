"""A sandbox for generated code: HumanEval completions today, tool-using executors next.

The boundary is the operating system, not the interpreter: each program runs in a fresh
bubblewrap jail (``_jail``: own user, network, pid and mount namespaces, a read-only /usr, a
private sized tmpfs, no environment) under rlimits and a seccomp filter (``_policy``), and is
killed with its whole process tree at the deadline (``_run``). In-interpreter hooks (PEP 578
audit hooks) are not used: a program can switch them off from its own frames. docs/sandbox.md
says what is isolated, what differs when not root, and what is out of scope.

    result = run_python("print(sum(range(10)))", timeout_s=5)
    result.passed, result.output, result.reason  # True, '45\\n', 'exited with 0'
"""

from symphony.sandbox._jail import SandboxUnavailableError
from symphony.sandbox._policy import DENIED_SYSCALLS, Limits
from symphony.sandbox._run import DEFAULT_LIMITS, SandboxResult, run_python

__all__ = ["DEFAULT_LIMITS", "DENIED_SYSCALLS", "Limits", "SandboxResult", "SandboxUnavailableError", "run_python"]
