"""Bring up the camera, collector, trainer, classifier and web nodes with one parameter file.

    ros2 launch gesture_classifier gesture_classifier.launch.py \
        [params_file:=/path/params.yaml] [namespace:=robot1] [web:=false]

The node lists are gesture_classifier.bringup.NODES and OPTIONAL_NODES, shared with the
launch-free ``bringup`` command used on machines without ``launch``.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gesture_classifier.bringup import NODES, OPTIONAL_NODES, enclave


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('gesture_classifier'), 'config',
                                  'gesture_classifier.yaml')
    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    nodes = [Node(package='gesture_classifier', executable=name, name=name,
                  namespace=namespace, parameters=[params_file], output='screen',
                  emulate_tty=True,
                  # SROS2 enclave (docs/security.md); ignored while security is not enabled
                  arguments=['--ros-args', '--enclave', enclave(name)],
                  # an optional node runs when its launch argument (e.g. web) is true
                  condition=IfCondition(LaunchConfiguration(name)) if name in OPTIONAL_NODES
                  else None)
             for name in [*NODES, *OPTIONAL_NODES]]
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='Parameter file of the nodes'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the nodes and their topics'),
        DeclareLaunchArgument('web', default_value='true',
                              description='Start the web node (the page on port 8080 of '
                              '127.0.0.1; see docs/security.md before exposing it)'),
        *nodes,
    ])
