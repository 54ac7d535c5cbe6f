"""``torch.compile`` that falls back to eager when compiling fails, for inference and training.

Compiling is lazy: a missing or failing C++ compiler, an inductor bug or an operator the
backend cannot lower shows as an exception at the first call (or the first call of a new
shape). :class:`EagerFallback` catches those (and only those), once, and repeats the call eagerly. The
repeat computes what an uncompiled call would: dynamo traces with fake tensors, so nothing ran,
and it restores the random state after tracing. Training's backward graphs are compiled with
the forward (not at the first backward, inductor's default), so their failures are caught here
too. Whoever owns the fallback warns (:class:`CompileFallbackWarning`) and logs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# The backend every compile of the project uses, read as each compile is set up
# (:func:`compile_with_fallback`), so tests can put one that fails cheaply, without compiling, in its place.
COMPILE_BACKEND = "inductor"


class CompileFallbackWarning(UserWarning):
    """Compiling failed; the work goes on uncompiled (eager), with the same results."""


def compile_failures() -> tuple[type[Exception], ...]:
    """The exceptions that mean compiling failed, not the computation: whatever the backend
    raised (dynamo wraps it: inductor's lowering and C++ compile errors, a missing compiler),
    dynamo's own internal errors, and C++/Triton kernels that fail to build at their first run."""
    import torch._dynamo.exc as dynamo_errors
    import torch._inductor.exc as inductor_errors

    return (dynamo_errors.BackendCompilerFailed, dynamo_errors.InternalTorchDynamoError,
            dynamo_errors.TritonUnavailableError, inductor_errors.InvalidCxxCompiler,
            inductor_errors.CppCompileError)


def failure_reason(error: BaseException) -> str:
    """One line: the innermost error's type and the first line of its message."""
    inner = getattr(error, "inner_exception", None) or error
    message = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {message[0]}" if message else type(inner).__name__


class EagerFallback:
    """Calls *compiled* until compiling fails, then *eager* for good.

    On the failing call *on_failure* gets the reason (one line) and the call is repeated eagerly.
    """

    def __init__(self, compiled: Callable[..., Any], eager: Callable[..., Any],
                 on_failure: Callable[[str], None]) -> None:
        self._compiled: Callable[..., Any] | None = compiled
        self._eager = eager
        self._on_failure = on_failure

    @property
    def compiling(self) -> bool:
        """Whether calls still go to the compiled callable."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is not None:
            from torch._functorch import config as functorch_config

            try:  # backward graphs compiled with the forward: their failures come here, not to backward()
                with functorch_config.patch(force_non_lazy_backward_lowering=True):
                    return self._compiled(*args, **kwargs)
            except compile_failures() as error:
                self._compiled = None
                self._on_failure(failure_reason(error))
        return self._eager(*args, **kwargs)


def compile_with_fallback(function: Callable[..., Any], on_failure: Callable[[str], None],
                          backend: str | Callable[..., Any] | None = None) -> EagerFallback:
    """*function* compiled with *backend* (None: :data:`COMPILE_BACKEND` as it is now), static
    shapes (one graph per input size), falling back to *function* itself."""
    return EagerFallback(torch.compile(function, backend=backend or COMPILE_BACKEND, dynamic=False),
                         function, on_failure)
