"""Hinge-axis identification in the IMU's sensor frame.

Two sources, both ROS-free numpy:

- gravity at rest: a door hinge is (nearly) vertical, so the mean specific force at rest points along it
  (up to the hinge tilt, typically < 2 deg, which costs only 1 - cos(tilt) < 0.1 % of the angle);
- the dominant rotation axis during swings: the principal eigenvector of the scatter matrix
  sum(w w^T dt) of bias-corrected angular rates w. A door leaf rotates about one fixed axis, so this is
  exact up to noise, whatever the hinge tilt and however the sensor is mounted.

The sign (which way is opening) is not observable from either; the estimator fixes it from the first
swing away from the closed rest, since a closed door can only open.
"""
from __future__ import annotations

import numpy as np


class SwingAxis:
    """Accumulates the rotation scatter matrix and returns its principal axis."""

    def __init__(self, rate_min: float, min_energy: float) -> None:
        """Args: rate_min: rates (rad/s) below this are ignored; min_energy: trace (rad^2/s) needed."""
        self.rate_min = rate_min
        self.min_energy = min_energy
        self.scatter = np.zeros((3, 3))
        self._sums = [0.0] * 6  # xx, yy, zz, xy, xz, yz, accumulated in Python floats (fast per sample)
        self._since_solve = 0

    def reset(self) -> None:
        self.scatter[:] = 0.0
        self._sums = [0.0] * 6
        self._since_solve = 0

    @property
    def energy(self) -> float:
        """Integrated squared rate so far (rad^2/s)."""
        return self._sums[0] + self._sums[1] + self._sums[2]

    def add(self, w: tuple[float, float, float], dt: float) -> bool:
        """Add one bias-corrected rate ``w`` (rad/s) held for ``dt`` (s); True if it was used."""
        if w[0] * w[0] + w[1] * w[1] + w[2] * w[2] < self.rate_min * self.rate_min or dt <= 0.0:
            return False
        x, y, z = w
        s = self._sums
        s[0] += x * x * dt
        s[1] += y * y * dt
        s[2] += z * z * dt
        s[3] += x * y * dt
        s[4] += x * z * dt
        s[5] += y * z * dt
        self._since_solve += 1
        return True

    def due(self, every: int = 25) -> bool:
        """True when enough energy is collected and ``every`` new samples arrived since the last solve."""
        return self._since_solve >= every and self.energy >= self.min_energy

    def solve(self, reference: np.ndarray) -> tuple[np.ndarray, float]:
        """Principal axis (unit, same hemisphere as ``reference``) and its quality in [0, 1].

        Quality is 1 - (second eigenvalue / first): 1 for a pure single-axis rotation.
        """
        self._since_solve = 0
        s = self._sums
        self.scatter[:] = [[s[0], s[3], s[4]], [s[3], s[1], s[5]], [s[4], s[5], s[2]]]
        vals, vecs = np.linalg.eigh(self.scatter)
        axis = vecs[:, 2]
        if float(axis @ reference) < 0.0:
            axis = -axis
        quality = 1.0 - float(vals[1] / vals[2]) if vals[2] > 0 else 0.0
        return axis / np.linalg.norm(axis), quality
