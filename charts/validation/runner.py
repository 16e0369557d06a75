"""The check runner: runs named checks, counts them and prints one line each."""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from .common import CheckFailed


class Runner:
    """Counts passed and failed checks and collects notes; no module-level state."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.notes: list[str] = []
        self.started = time.monotonic()

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one named check; an exception (or CheckFailed) fails it. Returns fn's result,
        or None when it failed."""
        try:
            result = fn()
        except CheckFailed as e:
            self.failed.append(f"{name}: {e}")
            print(f"FAIL {name}: {e}")
            return None
        except Exception as e:  # an unexpected error is a failure too, with its trace
            self.failed.append(f"{name}: {type(e).__name__}: {e}")
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
            return None
        self.passed += 1
        print(f"ok   {name}")
        return result

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finish(self) -> int:
        """Print the notes (once each, in order) and the summary; the process exit code."""
        for n in dict.fromkeys(self.notes):
            print(f"note: {n}")
        print(f"({time.monotonic() - self.started:.1f}s)")
        print(f"chart-validation: {self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0
