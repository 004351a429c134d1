"""The problem definition shared by every stage: tasks (observation, reward, success) and the arm's kinematics and
robot description."""
