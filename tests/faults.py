"""Fault injection around the real adapters: a `Faulty` wrapper forwards every call to the
port it wraps and raises where a rule says so, so the code under test is never patched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgpipe.errors import TransientError


@dataclass
class Rule:
    method: str
    times: int  # how many more calls fail; -1 = every call
    when: Callable[..., bool] | None = None
    error: Callable[[], BaseException] = lambda: TransientError("unavailable (injected)")
    hits: int = 0


@dataclass
class Faulty:
    inner: Any
    rules: list[Rule] = field(default_factory=list)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    hooks: dict[str, Callable[..., None]] = field(default_factory=dict)

    def fail(
        self,
        method: str,
        times: int = 1,
        when: Callable[..., bool] | None = None,
        error: Callable[[], BaseException] | None = None,
    ) -> Rule:
        rule = Rule(method, times, when, error or Rule.error)
        self.rules.append(rule)
        return rule

    def heal(self) -> None:
        self.rules.clear()

    def before(self, method: str, hook: Callable[..., None]) -> None:
        """Run `hook(*args, **kwargs)` before each call of `method` (something else happening
        at that moment: a delete, a newer attempt); it removes itself by returning True."""
        self.hooks[method] = hook

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            hook = self.hooks.get(name)
            if hook is not None and hook(*args, **kwargs):
                del self.hooks[name]
            for rule in self.rules:
                if rule.method != name or rule.times == 0:
                    continue
                if rule.when is not None and not rule.when(*args, **kwargs):
                    continue
                if rule.times > 0:
                    rule.times -= 1
                rule.hits += 1
                raise rule.error()
            return target(*args, **kwargs)

        return call

    def called(self, name: str) -> int:
        return sum(1 for method, _ in self.calls if method == name)
