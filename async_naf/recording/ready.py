"""When the recorder has matched a robot's publishers (ROS-free): the rule behind ``/recorder/ready``.

The recorder groups its topics by their first namespace component (``/robot_0/joint_states`` and
``/robot_0/door/imu`` belong to ``/robot_0``; ``/diagnostics`` to none). A group is ready when, for each of
its topics, the recorder's subscription has matched (over DDS) at least as many publishers as the ROS graph
shows on that topic, and the topics named by ``REQUIRED`` (the joint states and the policy's steps, what every
robot publishes from its first step) have at least one matched publisher. A topic nobody publishes yet does
not hold a group back: nothing of it can be lost. The graph's count is of publishers of the recorded type: one
of another type never matches (DDS keeps types apart), and must not hold a robot back for ever.
"""
from __future__ import annotations

from collections.abc import Sequence

REQUIRED = ("joint_states", "policy/step")  # relative to a robot namespace


def topic_namespace(topic: str) -> str:
    """``/robot_0/door/imu`` -> ``/robot_0``; a topic without a namespace (``/diagnostics``) -> ``""``."""
    parts = topic.strip("/").split("/")
    return f"/{parts[0]}" if len(parts) > 1 else ""


def ready_namespaces(topics: Sequence[str], matched: Sequence[int], in_graph: Sequence[int]) -> list[str]:
    """The namespaces whose topics the recorder has fully matched, sorted.

    Args:
        topics: absolute topic names the recorder subscribes to.
        matched: per topic, the publishers its subscription has matched (``Subscription.get_publisher_count``).
        in_graph: per topic, the publishers the ROS graph shows (``Node.count_publishers``).
    """
    if not len(topics) == len(matched) == len(in_graph):
        raise ValueError(f"topics, matched and in_graph differ in length: {len(topics)}, {len(matched)}, "
                         f"{len(in_graph)}")
    waiting = waiting_topics(topics, matched, in_graph)
    return sorted({topic_namespace(topic) for topic in topics} - set(waiting) - {""})


def waiting_topics(topics: Sequence[str], matched: Sequence[int], in_graph: Sequence[int]) -> dict[str, list[str]]:
    """Per namespace that is not ready, the topics that hold it back (arguments as :func:`ready_namespaces`)."""
    if not len(topics) == len(matched) == len(in_graph):
        raise ValueError(f"topics, matched and in_graph differ in length: {len(topics)}, {len(matched)}, "
                         f"{len(in_graph)}")
    waiting: dict[str, list[str]] = {}
    for topic, n_matched, n_graph in zip(topics, matched, in_graph):
        ns = topic_namespace(topic)
        required = ns and topic[len(ns) + 1:] in REQUIRED
        if ns and not (n_matched >= n_graph and (n_matched >= 1 or not required)):
            waiting.setdefault(ns, []).append(topic)
    return waiting
