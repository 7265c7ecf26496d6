"""Bring up the camera, collector, trainer, classifier and web nodes with one parameter file.

    ros2 launch gesture_classifier gesture_classifier.launch.py \
        [params_file:=/path/params.yaml] [namespace:=robot1] [web:=false] [trainer:=false] ...

Each node has a launch argument of its name (default true) that leaves it out when false: e.g.
``trainer:=false`` on a robot whose trainer runs on a workstation (docs/remote-trainer.md).
The node lists are gesture_classifier.tools.bringup.NODES and OPTIONAL_NODES, shared with the
launch-free ``bringup`` command used on machines without ``launch``.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gesture_classifier.ros.runtime import SHUTDOWN_TIMEOUT_S, SIGTERM_TIMEOUT_S
from gesture_classifier.tools.bringup import ALL_NODES, OPTIONAL_NODES, enclave


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('gesture_classifier'), 'config',
                                  'gesture_classifier.yaml')
    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    switches = [DeclareLaunchArgument(
        name, default_value='true',
        description=f'Start the {name} node' + (
            ' (the page on port 8080 of 127.0.0.1; see docs/security.md before exposing it)'
            if name in OPTIONAL_NODES else ''))
        for name in ALL_NODES]
    nodes = [Node(package='gesture_classifier', executable=name, name=name,
                  namespace=namespace, parameters=[params_file], output='screen',
                  emulate_tty=True,
                  # SROS2 enclave (docs/security.md); ignored while security is not enabled
                  arguments=['--ros-args', '--enclave', enclave(name)],
                  condition=IfCondition(LaunchConfiguration(name)))
             for name in ALL_NODES]
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='Parameter file of the nodes'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the nodes and their topics'),
        # launch's own setting (default 5 s): how long after Ctrl-C's SIGINT it waits before
        # SIGTERM. A node bounds its clean-up to SHUTDOWN_TIMEOUT_S (ros/runtime.py).
        DeclareLaunchArgument('sigterm_timeout', default_value=f'{SIGTERM_TIMEOUT_S:g}',
                              description='Seconds between SIGINT and SIGTERM at shutdown '
                                          f'(a node cleans up within {SHUTDOWN_TIMEOUT_S:g} s)'),
        *switches,
        *nodes,
    ])
