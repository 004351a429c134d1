"""The door's latch: one rule for every simulator that models it (no ROS, no simulator imports).

A bolt on the leaf engages the strike plate in the frame. Engaged, it keeps the door within ``play`` (rad) of
closed: the hinge's upper limit is ``play``. Turning the handle to ``threshold`` (rad) or beyond retracts it:
the hinge's upper limit becomes the door stop. The bolt re-engages only once the handle is back below the
threshold while the door is within the play (i.e. closed); an open door never snaps shut.

Used by the embedded MuJoCo model (:meth:`async_naf.sim.ArmDoorSim._update_latch`) and by the Gazebo system
:mod:`async_naf.task.gz_latch`, which switch the hinge's upper joint limit between ``play`` and the door stop
whenever :func:`latch_next` changes the state. Parameters: ``DoorConfig.latch_threshold`` / ``latch_play``
(config/sim.yaml), passed to Gazebo through the xacro arguments of the same names.
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
