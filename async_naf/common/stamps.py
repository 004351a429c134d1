"""One stream's header clock: a stamp far from it is a glitch, unless the stream goes on from there (ROS-free).

A sensor stream's stamps move forward in small steps. A stamp far from the newest accepted one is either a glitch
(one corrupt or default-constructed message: stamp 0, a negative second, a year ahead) or the stream's clock
really moved (a simulation restarted, a bag replayed in a loop: back; a sensor back after a long gap: ahead).
One message cannot tell the two apart; the ones after it can. :class:`StampGuard` drops a far stamp until
``confirm`` stamps in a row go on from it (each within ``jump_s`` after the one before). Then a clock that went
back is a jump (:attr:`StampGuard.JUMP`: the caller restarts what depends on the old clock), and one that went
ahead was a gap in the stream (:attr:`StampGuard.OK`: what follows a gap handles it, as it did before).

    guard = StampGuard(jump_s=1.0)
    verdict = guard.check(stamp_ns)      # StampGuard.OK, DROP or JUMP
    if verdict == StampGuard.DROP: ...   # count it, skip the message
    if verdict == StampGuard.JUMP: ...   # the clock went back: restart (e.g. the estimate), then use it
    guard.accept(stamp_ns)               # once the message was used

Before this, one such message restarted the door-angle estimate (door assumed closed while it stood at
45 deg: -13.7 to -152 deg published afterwards), and one joint state stamped a year ahead made a policy re-send
its last command until the next episode.
"""
from __future__ import annotations

import math

JUMP_CONFIRM = 5  # stamps in a row that confirm a jump (25 ms of a 200 Hz IMU, 0.25 s of 20 Hz joint states)
IMU_JUMP_S = 1.0  # the door_angle node's default time_jump_reset_s, also what `async-naf door-angle` uses, s


class StampGuard:
    """See the module docstring.

    Args:
        jump_s: a stamp more than this behind or ahead of the newest accepted one is far, s.
        confirm: far stamps in a row, each within ``jump_s`` after the one before, that confirm a jump.

    Attributes:
        glitches: far stamps dropped.  jumps: jumps back confirmed.  gaps: jumps ahead confirmed (a gap).
        newest_ns: the newest accepted stamp (None: none).

    Raises:
        ValueError: ``jump_s`` not a positive number or ``confirm`` below 1.
    """

    OK, DROP, JUMP = "ok", "drop", "jump"

    def __init__(self, jump_s: float, confirm: int = JUMP_CONFIRM) -> None:
        if not (isinstance(jump_s, (int, float)) and math.isfinite(jump_s) and jump_s > 0):
            raise ValueError(f"jump_s must be a positive number of seconds, got {jump_s!r}")
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            raise ValueError(f"confirm must be an integer >= 1, got {confirm!r}")
        self.jump_ns = int(jump_s * 1e9)
        self.confirm = confirm
        self.newest_ns: int | None = None
        self.glitches = 0
        self.jumps = 0
        self.gaps = 0
        self._candidate: int | None = None  # the newest far stamp of a run that may be a jump
        self._run = 0

    def check(self, stamp_ns: int) -> str:
        """:attr:`OK` (near the stream's clock, the first stamp, or the last of ``confirm`` far stamps ahead in a
        row that go on from each other: a gap), :attr:`DROP` (far: a glitch, or a move not confirmed yet) or
        :attr:`JUMP` (the last of ``confirm`` far stamps behind in a row that go on from each other)."""
        newest = self.newest_ns
        if newest is None or newest - self.jump_ns <= stamp_ns <= newest + self.jump_ns:
            self._candidate, self._run = None, 0
            return self.OK
        c = self._candidate
        self._run = self._run + 1 if c is not None and c <= stamp_ns <= c + self.jump_ns else 1
        self._candidate = stamp_ns
        if self._run >= self.confirm:
            self._candidate, self._run = None, 0
            if stamp_ns > newest:  # ahead: the stream was away, its clock did not change
                self.gaps += 1
                return self.OK
            self.jumps += 1
            return self.JUMP
        self.glitches += 1
        return self.DROP

    def accept(self, stamp_ns: int) -> None:
        """The message stamped ``stamp_ns`` was used: the stream's clock is now there."""
        self.newest_ns = stamp_ns

    def reset(self) -> None:
        """Forget the stream's clock (the next stamp is the first)."""
        self.newest_ns, self._candidate, self._run = None, None, 0
