"""Argument-error tests run on every backend."""
import pytest

import ndops


def raises_test(call, cases, backends=("native", "fallback")):
    """A pytest test: on every backend in ``backends``, for every ``(arguments, error, match)``
    in ``cases``, ``call(arguments)`` raises ``error`` with a message matching ``match``.
    Assign it to a module-level ``test_*`` name so pytest collects it."""
    @pytest.mark.parametrize("backend", backends)
    @pytest.mark.parametrize("arguments,error,match", cases)
    def test(backend, arguments, error, match):
        with ndops.backend(backend), pytest.raises(error, match=match):
            call(arguments)
    return test
