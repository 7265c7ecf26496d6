"""Which Fast DDS profile variable the nodes set (the transfer itself is tested in
test/integration/test_system.py::test_camera_sized_frames_reach_best_effort_subscribers)."""
from __future__ import annotations

import pytest

from gesture_classifier.ros.middleware import config_file, use_large_message_profile

PROFILE = str(config_file('fastdds.xml'))


@pytest.mark.parametrize('distro, variable', [
    ('humble', 'FASTRTPS_DEFAULT_PROFILES_FILE'), ('jazzy', 'FASTRTPS_DEFAULT_PROFILES_FILE'),
    ('kilted', 'FASTDDS_DEFAULT_PROFILES_FILE'), ('rolling', 'FASTDDS_DEFAULT_PROFILES_FILE')])
def test_one_variable_per_fast_dds_generation(distro, variable):
    env = {'ROS_DISTRO': distro}
    assert use_large_message_profile(env) == config_file('fastdds.xml')
    assert env == {'ROS_DISTRO': distro, variable: PROFILE}


@pytest.mark.parametrize('env', [
    {'FASTDDS_DEFAULT_PROFILES_FILE': '/mine.xml'}, {'FASTRTPS_DEFAULT_PROFILES_FILE': '/m.xml'},
    {'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}, {'RMW_IMPLEMENTATION': 'rmw_zenoh_cpp'}])
def test_users_settings_and_other_middlewares_are_left_alone(env):
    before = dict(env)
    assert use_large_message_profile(env) is None
    assert env == before


def test_the_profile_is_installed_xml():
    import xml.etree.ElementTree as ET
    root = ET.parse(PROFILE).getroot()
    sizes = [e.text for e in root.iter() if e.tag.endswith('segment_size')]
    assert sizes and int(sizes[0]) >= 4 * 1280 * 720 * 3
