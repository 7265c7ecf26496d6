"""Middleware settings for camera-sized messages (see ``config/fastdds.xml`` for the why).

:func:`use_large_message_profile` must run before the process creates its first ROS
participant: the entry points run it (:func:`gesture_classifier.ros.runtime.
set_process_defaults`), and so does a :class:`~gesture_classifier.ros.client.GestureClient`
that makes its own context.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ['PROFILE_VARIABLES', 'config_file', 'use_large_message_profile']

#: Fast DDS 3 (Kilted and later) reads the first, Fast DDS 2.x the second.
PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
#: ROS distributions (``ROS_DISTRO``) that ship Fast DDS 2.x.
FASTDDS2_DISTROS = ('humble', 'iron', 'jazzy')


def config_file(name: str) -> Path:
    """``config/<name>`` from the installed package share (colcon build) or, when running from
    a source checkout, from the repository."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory('gesture_classifier')) / 'config' / name
        if share.is_file():
            return share
    except Exception:  # ament_index not importable or package not installed
        pass
    return Path(__file__).resolve().parents[4] / 'config' / name


def use_large_message_profile(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point Fast DDS at ``config/fastdds.xml`` in ``environ``, unless a profile file is already
    set or ``RMW_IMPLEMENTATION`` names another middleware. Returns the file set, or None."""
    rmw = environ.get('RMW_IMPLEMENTATION', '')
    if rmw and not rmw.startswith('rmw_fastrtps'):
        return None
    if any(environ.get(var) for var in PROFILE_VARIABLES):
        return None
    path = config_file('fastdds.xml')
    if not path.is_file():
        return None
    # Only one variable: Fast DDS 3 reads both and then rejects the second copy of the profile
    # ("There is other transport with the same id"); Fast DDS 2.x (Humble 2.6, Jazzy 2.14)
    # reads only the old one (tested here on Jazzy and Kilted).
    fastdds2 = environ.get('ROS_DISTRO', '') in FASTDDS2_DISTROS
    environ[PROFILE_VARIABLES[1] if fastdds2 else PROFILE_VARIABLES[0]] = str(path)
    return path
