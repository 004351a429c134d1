"""Stage 1, sensing: the door IMU -> door angle (node: door_angle)."""
