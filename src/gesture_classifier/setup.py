"""ament_python package of the gesture_classifier nodes.

The launch file and parameter files live at the top of the repository (``launch/``,
``config/``), the sample images in ``data/`` and the web page in ``web/``; they are installed
into this package's share directory so that ``ros2 launch gesture_classifier
gesture_classifier.launch.py`` finds them.
"""
import os
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'gesture_classifier'
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _files(folder: Path, pattern: str = '*'):
    """data_files entries for every file under ``folder`` matching ``pattern``: each goes to
    share/<package>/<folder name>/<same sub-path>; source paths are relative to this file."""
    groups = {}
    for path in sorted(folder.rglob(pattern)):
        if path.is_file():
            dest = os.path.join('share', PACKAGE, str(path.parent.relative_to(folder.parent)))
            groups.setdefault(dest, []).append(os.path.relpath(path, HERE))
    return list(groups.items())


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        *_files(REPO / 'launch', '*.py'),
        *_files(REPO / 'config'),
        *_files(HERE / 'data'),
        *_files(HERE / 'web'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='gesture_classifier team',
    maintainer_email='gesture-classifier@example.com',
    description='ROS 2 nodes to collect, train and classify hand gestures with ResNet-18.',
    license='MIT',
    entry_points={
        'console_scripts': [
            'camera = gesture_classifier.nodes:start_camera',
            'classifier = gesture_classifier.nodes:start_classifier',
            'collector = gesture_classifier.nodes:start_collector',
            'trainer = gesture_classifier.nodes:start_trainer',
            'web = gesture_classifier.nodes:start_web',
            'bringup = gesture_classifier.tools.bringup:main',
            'gesture_cli = gesture_classifier.tools.cli:main',
            'demo = gesture_classifier.tools.demo:main',
        ],
    },
)
