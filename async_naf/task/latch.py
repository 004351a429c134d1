"""The door's latch and door closer: one rule each for every simulator that models them (no ROS, no
simulator imports).

A bolt on the leaf engages the strike plate in the frame. Engaged, it keeps the door within ``play`` (rad) of
closed: the hinge's upper limit is ``play``. Turning the handle to ``threshold`` (rad) or beyond retracts it:
the hinge's upper limit becomes the door stop. The bolt re-engages only once the handle is back below the
threshold while the door is within the play (i.e. closed); an open door never snaps shut.

Used by the embedded MuJoCo model (:meth:`async_naf.sim.ArmDoorSim._update_latch`) and by the Gazebo system
:mod:`async_naf.task.gz_latch`, which switch the hinge's upper joint limit between ``play`` and the door stop
whenever :func:`latch_next` changes the state. Parameters: ``DoorConfig.latch_threshold`` / ``latch_play``
(config/sim.yaml), passed to Gazebo through the xacro arguments of the same names.

The **door closer** of the simulated arm backends (hardware mode of the embedded sim, Gazebo) closes the door
between episodes without a person: a constant closing torque on the hinge (:func:`door_closer_torque`) while
the door is open beyond half the latch play and the arm has held still for a while (:class:`StillTimer`), so
it never acts while a policy moves the arm, and the reset node's wait with the arm held clear is what lets it
act. The embedded sim node takes "still" from its commands (zero), Gazebo's system from the arm's joint speeds.
"""
from __future__ import annotations


def latch_next(latched: bool, handle: float, hinge: float, threshold: float, play: float) -> bool:
    """The latch state after observing the handle and hinge angles (rad).

    Args:
        latched: the state before (True = bolt engaged).
        handle: lever angle, rad (0 = at rest, + = turned toward unlatching).
        hinge: door angle, rad (0 = closed, + = open).
        threshold: handle angle at and beyond which the bolt is retracted, rad.
        play: hinge travel the engaged bolt allows, rad.
    """
    if latched:
        return handle < threshold
    return handle < threshold and hinge <= play


def hinge_upper_limit(latched: bool, play: float, max_open: float) -> float:
    """The hinge's upper joint limit for a latch state: the bolt's play, or the door stop (rad)."""
    return play if latched else max_open


def door_closer_torque(torque_nm: float, closing: bool, hinge: float, play: float) -> float:
    """The door closer's hinge torque, N m (negative closes): ``-torque_nm`` while ``closing`` (the arm has held
    still long enough: :class:`StillTimer`) and the door is open beyond half the latch play (``hinge`` rad,
    ``play`` rad), else 0. ``torque_nm`` <= 0: no closer."""
    return -torque_nm if torque_nm > 0.0 and closing and hinge > 0.5 * play else 0.0


class StillTimer:
    """Whether something has held still for ``delay_s`` without interruption (times in s, any clock)."""

    def __init__(self, delay_s: float, since: float | None = None) -> None:
        self.delay_s = float(delay_s)
        self.since = since  # when the current still spell began, s (None: moving)

    def update(self, now: float, still: bool) -> bool:
        """Observe at ``now`` whether it is still; True once it has been still for ``delay_s``."""
        if not still:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.delay_s
