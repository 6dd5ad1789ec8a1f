"""Which failures are a Ctrl-C: the KeyboardInterrupt itself, or an error raised from one."""

from __future__ import annotations

from rayfit.interrupts import from_ctrl_c


def raised_while_handling(inner: BaseException, outer: BaseException, explicit: bool) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            if explicit:
                raise outer from exc
            raise outer
    except BaseException as exc:
        return exc


def test_a_ctrl_c_is_found_along_the_chain_and_nothing_else_is() -> None:
    assert from_ctrl_c(KeyboardInterrupt())
    for explicit in (True, False):
        assert from_ctrl_c(raised_while_handling(KeyboardInterrupt(), ImportError("initialization failed"), explicit))
        wrapped = raised_while_handling(KeyboardInterrupt(), ImportError("initialization failed"), explicit)
        assert from_ctrl_c(raised_while_handling(wrapped, RuntimeError("cleanup"), explicit))
        assert not from_ctrl_c(raised_while_handling(ValueError("x"), ImportError("y"), explicit))
    assert not from_ctrl_c(ImportError("No module named 'sklearn'"))
    assert not from_ctrl_c(SystemExit(0))


def test_a_chain_that_loops_back_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert not from_ctrl_c(first)
