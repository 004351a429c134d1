"""The unknown-publisher alarm on a node (thin rclpy layer over :mod:`async_naf.common.publishers`).

Every ``publisher_watch.period_s`` (steady clock) the node asks the graph who publishes on its control topics
(``get_publishers_info_by_topic``), compares with the publishers the graph names, logs each unknown publisher
when it appears (and when it leaves) and publishes the result on ``/diagnostics`` as a status of its own,
``<node>/publishers``: WARN naming every unknown publisher by topic, OK otherwise, with the counters.
"""
from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType

from async_naf.common.publishers import PublisherReport, PublisherWatch, PublisherWatchConfig, expected_publishers


class PublisherAlarm:
    """Attach to ``node`` (any rclpy Node, lifecycle ones included): see the module docstring.

    Args:
        node: the node.
        role: ``policy``, ``guard`` or ``trainer`` (which topics and publishers: :func:`expected_publishers`).
        config: the node's PublisherWatchConfig (period 0: nothing is created).
        callback_group: for the timer (the trainer keeps it off its subscriptions' group).
    """

    def __init__(self, node: Any, role: str, config: PublisherWatchConfig, callback_group: Any = None) -> None:
        self.node = node
        expected = {node.resolve_topic_name(topic): patterns
                    for topic, patterns in expected_publishers(role, node.get_namespace()).items()}
        self.watch = PublisherWatch(expected, config)
        self.last: PublisherReport | None = None
        if config.period_s <= 0:
            return
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_timer(config.period_s, self.check, callback_group=callback_group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def check(self) -> None:
        """One comparison: log what changed, publish the status."""
        node = self.node
        observed = {topic: [(i.node_name, i.node_namespace) for i in node.get_publishers_info_by_topic(topic)]
                    for topic in self.watch.expected}
        report = self.last = self.watch.check(observed)
        for topic, names in report.new.items():
            node.get_logger().warning(
                f"unknown publisher(s) on {topic}: {', '.join(names)} (not in the graph description; rclpy cannot "
                f"refuse their messages: use SROS2 where DDS security exists, docs/graph.md)")
        for topic, names in report.gone.items():
            node.get_logger().info(f"unknown publisher(s) left {topic}: {', '.join(names)}")
        values = [KeyValue(key=topic, value=", ".join(names)) for topic, names in sorted(report.unknown.items())]
        values += [KeyValue(key=k, value=str(v)) for k, v in self.watch.counts.items()]
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if report.unknown else DiagnosticStatus.OK,
            name=f"{node.get_fully_qualified_name()}/publishers",
            message=f"unknown publishers: {report.summary()}" if report.unknown else "publishers as in the graph",
            hardware_id=node.get_namespace(), values=values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = node.get_clock().now().to_msg()
        self._pub.publish(msg)
