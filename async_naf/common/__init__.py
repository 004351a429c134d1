"""Utilities every layer may use: config validators (checks), package resources, ROS environment defaults,
exploration noise."""
