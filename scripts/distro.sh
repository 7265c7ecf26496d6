# Sourced by the other scripts: where the ROS 2 distribution chosen by GC_ROS (kilted, the
# default, or jazzy; both from PyPI wheels) lives. Kilted keeps the plain names so that a
# single-distro set-up looks like any colcon workspace.
GC_ROS="${GC_ROS:-kilted}"
case "$GC_ROS" in
  kilted) GC_VENV=.venv GC_REQ=requirements-dev.txt GC_BUILD=build GC_INSTALL=install GC_LOG=log ;;
  jazzy)  GC_VENV=.venv-jazzy GC_REQ=requirements-jazzy.txt GC_BUILD=build-jazzy \
          GC_INSTALL=install-jazzy GC_LOG=log-jazzy ;;
  *) echo "GC_ROS must be kilted or jazzy, not '$GC_ROS'" >&2; return 1 2>/dev/null || exit 1 ;;
esac
# torch, torchvision, OpenCV, ONNX Runtime (requirements-ml.txt): one venv that both
# distributions' venvs see through a .pth file (scripts/setup.sh).
GC_ML_VENV=.venv-ml
# What a distribution's own setup.bash exports; the nodes read it (gesture_classifier.ros.middleware).
export ROS_DISTRO="$GC_ROS"
