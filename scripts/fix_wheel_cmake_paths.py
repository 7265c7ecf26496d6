"""Point the CMake exports of the ROS 2 PyPI wheels at this virtual environment.

The message wheels (ros-std-msgs, ...) export CMake targets whose include directories name the
wheel builder's Python (/opt/python/cp311-cp311/...). colcon then fails with "Imported target
... includes non-existent path". This rewrites those two paths, in place, to this interpreter's
include directory and NumPy's. Idempotent. See ../shared/ros2-on-pip.md, gotcha 1.
"""
import glob
import os
import re
import sys
import sysconfig

import numpy

PY_INCLUDE = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
NP_INCLUDE = re.compile(
    r'/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include')


def main() -> int:
    prefix = sys.prefix
    py_inc = sysconfig.get_paths()['include']
    np_inc = numpy.get_include()
    changed = 0
    for path in glob.glob(os.path.join(prefix, 'share', '*', 'cmake', '*.cmake')):
        with open(path, encoding='utf-8') as f:
            text = f.read()
        new = NP_INCLUDE.sub(np_inc, PY_INCLUDE.sub(py_inc, text))
        if new != text:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new)
            changed += 1
    print(f'fix_wheel_cmake_paths: {changed} CMake file(s) now point at {py_inc} and {np_inc}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
