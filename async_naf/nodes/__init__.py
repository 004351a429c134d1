"""rclpy nodes of async_naf, installed as ``async_naf.nodes``.

Thin layers over the ROS-free core: message -> numpy -> core -> message. Each module has ``main()``,
registered as a console script in setup.py (``ros2 run async_naf <name>``).
"""
