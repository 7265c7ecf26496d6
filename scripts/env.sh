# Source this file (". scripts/env.sh") to use the project on a machine without a ROS install:
# it activates the venv (ROS 2 wheels, torch, ...), sources the colcon workspace and puts the
# package's executables (bringup, gesture_cli, demo, camera, ...) on PATH, the way `ros2 run`
# finds them on a robot. GC_ROS=jazzy selects the Jazzy set-up (default: kilted).
_gc_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
# shellcheck source=distro.sh
. "$_gc_root/scripts/distro.sh"
. "$_gc_root/$GC_VENV/bin/activate"
# shellcheck disable=SC1091
. "$_gc_root/$GC_INSTALL/setup.bash"
export PATH="$_gc_root/$GC_INSTALL/gesture_classifier/lib/gesture_classifier:$PATH"
# Set the library path the ROS wheels need up front, so importing rclpy does not re-exec the
# interpreter (ros2-on-pip.md, gotcha 3).
_gc_site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
_gc_libs="$VIRTUAL_ENV/lib"
for _d in "$_gc_site"/ros_*.libs; do [ -d "$_d" ] && _gc_libs="$_gc_libs:$_d"; done
export LD_LIBRARY_PATH="$_gc_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# The wheels install their packages' share/ into the venv prefix: `ros2 interface show`,
# `ros2 pkg list` (ament_index) find std_msgs & co. there, the project's in the workspace.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV" ;;
esac
unset _gc_root _gc_site _gc_libs _d
