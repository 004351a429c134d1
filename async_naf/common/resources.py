"""Locating the package's data files (``urdf/``, ``config/``, ``launch/``) without ROS.

Search order: the source checkout next to this package (``pip install -e .`` and running from the
repository), ``<sys.prefix>/share/async_naf`` (``pip install .``), then the ament index (a colcon
install, looked up lazily so the core never needs ROS).
"""
from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

PACKAGE = "async_naf"


@cache
def share_dir() -> Path:
    """Return the directory that holds ``urdf/``, ``config/`` and ``launch/``.

    Raises:
        FileNotFoundError: if no installed or source copy of the data files can be found.
    """
    candidates = [Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / PACKAGE]  # checkout root
    for candidate in candidates:
        if (candidate / "urdf").is_dir() and (candidate / "config").is_dir():
            return candidate
    try:  # a ROS install: the ament index knows where colcon put share/async_naf
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):
        pass  # no ROS install, or async_naf not in its index: report the places tried below
    else:
        if (installed / "urdf").is_dir():
            return installed
        candidates.append(installed)
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} data files (urdf/, config/); looked in: "
        + ", ".join(str(c) for c in candidates)
    )


def data_path(*parts: str) -> Path:
    """Path of a data file, e.g. ``data_path('urdf', 'arm_door.urdf.xacro')``."""
    return share_dir().joinpath(*parts)
