"""async_naf.common.stamps.StampGuard: one far stamp is a glitch, a run of them that goes on is a jump (ROS-free)."""
from __future__ import annotations

import pytest

from async_naf.common.stamps import JUMP_CONFIRM, StampGuard

S = 1_000_000_000  # ns per s


def _feed(guard: StampGuard, stamps: list[int]) -> list[str]:
    out = []
    for stamp in stamps:
        verdict = guard.check(stamp)
        if verdict != StampGuard.DROP:
            guard.accept(stamp)
        out.append(verdict)
    return out


def test_stamps_near_the_stream_pass_and_one_far_stamp_is_a_glitch() -> None:
    guard = StampGuard(1.0)
    stream = [100 * S + k * 5_000_000 for k in range(10)]
    assert set(_feed(guard, stream)) == {StampGuard.OK}
    # stamp 0 (a default-constructed message), a negative second, a year ahead: each alone, the stream goes on
    for glitch in (0, -5 * S, 100 * S + 365 * 86_400 * S):
        assert _feed(guard, [glitch, stream[-1] + 5_000_000]) == [StampGuard.DROP, StampGuard.OK]
        stream.append(stream[-1] + 5_000_000)
    assert (guard.glitches, guard.jumps, guard.newest_ns) == (3, 0, stream[-1])
    # within jump_s either way is the stream's own business (a late message, a short gap): not far
    assert guard.check(stream[-1] - S // 2) == guard.check(stream[-1] + S) == StampGuard.OK


@pytest.mark.parametrize("offset_s", [-60.0, 2.0, 3600.0])
def test_a_run_of_far_stamps_that_go_on_from_each_other_is_a_jump_back_or_a_gap(offset_s: float) -> None:
    """A restarted simulation (back: a jump, the caller restarts) or a sensor back after a gap (ahead: nothing to
    restart, the estimate takes a gap as it did before), confirmed by JUMP_CONFIRM stamps in a row."""
    guard = StampGuard(1.0)
    _feed(guard, [100 * S + k * 5_000_000 for k in range(5)])
    start = 100 * S + int(offset_s * S)
    verdicts = _feed(guard, [start + k * 5_000_000 for k in range(JUMP_CONFIRM + 2)])
    moved = StampGuard.JUMP if offset_s < 0 else StampGuard.OK
    assert verdicts == [StampGuard.DROP] * (JUMP_CONFIRM - 1) + [moved, StampGuard.OK, StampGuard.OK]
    assert (guard.jumps, guard.gaps, guard.glitches) == (int(offset_s < 0), int(offset_s > 0), JUMP_CONFIRM - 1)
    assert guard.newest_ns == start + (JUMP_CONFIRM + 1) * 5_000_000


def test_far_stamps_that_do_not_go_on_from_each_other_never_confirm_a_jump() -> None:
    guard = StampGuard(1.0, confirm=3)
    _feed(guard, [100 * S])
    # far, but each far from the one before (garbage stamps): never a jump
    assert _feed(guard, [0, 50 * S, -3 * S, 900 * S, 7 * S]) == [StampGuard.DROP] * 5
    # a run broken by a stamp near the stream starts over
    assert _feed(guard, [0, 5_000_000, 100 * S + 1, 10_000_000, 15_000_000, 20_000_000]) == [
        StampGuard.DROP, StampGuard.DROP, StampGuard.OK, StampGuard.DROP, StampGuard.DROP, StampGuard.JUMP]


def test_reset_and_bad_arguments() -> None:
    guard = StampGuard(0.5)
    _feed(guard, [100 * S])
    guard.reset()
    assert guard.check(0) == StampGuard.OK  # the first stamp after a reset
    for jump_s in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError):
            StampGuard(jump_s)  # type: ignore[arg-type]
    for confirm in (0, True, 2.5):
        with pytest.raises(ValueError):
            StampGuard(1.0, confirm)  # type: ignore[arg-type]
