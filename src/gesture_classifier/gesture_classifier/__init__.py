"""gesture_classifier: learn hand gestures from a robot's camera and recognise them live.

The plain-Python core (no ROS needed) lives in:

- :mod:`gesture_classifier.tasks`      task presets and the on-disk layout of a task
- :mod:`gesture_classifier.imaging`    sensor_msgs/Image <-> NumPy views (honours ``step``)
- :mod:`gesture_classifier.preprocess` the one image preprocessing used for training and inference
- :mod:`gesture_classifier.model`      ResNet-18 creation, initial weights, model files
- :mod:`gesture_classifier.dataset`    labels, the ``<dataset>/<class>/*.jpg`` layout, samples
- :mod:`gesture_classifier.training`   the fine-tuning loop (progress and cancel hooks)
- :mod:`gesture_classifier.inference`  a loaded model that turns frames into probabilities
- :mod:`gesture_classifier.sources`    camera sources: V4L2, GStreamer, video file, image folder

The ROS 2 nodes in :mod:`gesture_classifier.nodes` only wire these to topics, services and
actions.
"""

__version__ = '0.1.0'
