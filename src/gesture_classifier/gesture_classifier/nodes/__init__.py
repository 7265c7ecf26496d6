"""ROS 2 nodes: thin wiring of the plain-Python core to topics, services and actions."""
