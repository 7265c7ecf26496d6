"""gesture_classifier: learn hand gestures from a robot's camera and recognise them live.

One package in five layers, each a subpackage; a layer imports only the layers below it
(``.importlinter`` at the repository root says so, and ``lint-imports`` checks it in CI):

- :mod:`gesture_classifier.tools`  command-line programs: ``gesture_cli``, ``demo``, ``bringup``
- :mod:`gesture_classifier.nodes`  one thin file per ROS 2 node: parameters, interfaces,
  callbacks that delegate to the layers below
- :mod:`gesture_classifier.web`    the web page's HTTP application (aiohttp) and its backend
- :mod:`gesture_classifier.ros`    ROS 2 helpers without node logic: the client
  (:class:`~gesture_classifier.ros.client.GestureClient`), message conversion, QoS, parameters,
  middleware settings, diagnostics, the node runner
- :mod:`gesture_classifier.core`   plain Python (no rclpy, no aiohttp): images, preprocessing,
  datasets and samples, training, evaluation, model files and versions, inference backends,
  gesture debouncing, camera sources

Nothing imports ``nodes`` or ``tools``, and no module does work when imported.
"""

__version__ = '0.1.0'
