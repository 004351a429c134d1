"""Who publishes on the topics a node takes control messages from (ROS-free): an alarm for unknown publishers.

Jazzy's rclpy cannot tell which publisher sent a message (``MessageInfo`` holds no publisher GID, see
docs/graph.md), so messages cannot be refused by sender. What a node *can* see is the graph: the nodes that
publish on a topic (``Node.get_publishers_info_by_topic``: node name and namespace). :class:`PublisherWatch`
compares them, every ``period_s``, with the publishers the graph names for each topic (fully qualified node
names, patterns (``*`` within one name) such as ``/robot_*/collector``): any other publisher is *unknown*: reported on
``/diagnostics`` (WARN, by name), logged when it appears and counted. It is an alarm, not a filter: the
messages of an unknown publisher still arrive (SROS2 is the filter, where DDS security exists).

    watch = PublisherWatch({"/robot_0/task/goal": ["/robot_0/collector"]}, PublisherWatchConfig())
    report = watch.check({"/robot_0/task/goal": [("collector", "/robot_0"), ("talker", "/")]})
    report.unknown   # {"/robot_0/task/goal": ["/talker"]};  report.new: the same (first seen now)

The expected publishers of each node follow the graph's names (:func:`expected_publishers`): goals from the
robot's collector, weights from the trainer, commands from the robot's policy and reset node, transitions
and episode statistics from the robots' collectors.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from async_naf.common.checks import numbers

UNNAMED = "<unnamed>"  # a publisher whose participant gives no node name (a plain DDS application)
RMW_UNKNOWN_NAMES = ("", "_NODE_NAME_UNKNOWN_")  # rmw_fastrtps: the participant's node info not (yet) received


@dataclass
class PublisherWatchConfig:
    """Parameters of the unknown-publisher alarm (``publisher_watch.*`` on the policy, guard and trainer).

    Attributes:
        period_s: compare the publishers on the watched topics with the graph's this often, s (0 = off).
        allowed: more publishers allowed on every watched topic: fully qualified node names or ``fnmatch``
            patterns, ``*`` within one name (e.g. ``/rosbag2_player`` when replaying a bag into the graph).
    """

    period_s: float = 2.0
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        numbers(self, ("period_s",), 0.0)
        self.allowed = tuple(str(a) for a in self.allowed)
        for pattern in self.allowed:
            if not pattern.startswith("/"):
                raise ValueError(f"publisher_watch.allowed: {pattern!r} is not a fully qualified node name")


@dataclass
class PublisherReport:
    """One comparison. ``unknown``: topic -> unknown publishers now (sorted); ``new``: those not there at the
    previous comparison; ``gone``: unknown ones that left since."""

    unknown: dict[str, list[str]] = field(default_factory=dict)
    new: dict[str, list[str]] = field(default_factory=dict)
    gone: dict[str, list[str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.unknown.values())

    def summary(self) -> str:
        """``topic: /a, /b; topic2: /c`` ('' when none)."""
        return "; ".join(f"{topic}: {', '.join(names)}" for topic, names in sorted(self.unknown.items()))


def _match(fqn: str, pattern: str) -> bool:
    """fnmatch where ``*`` and ``?`` stay within one name (never across ``/``)."""
    regex = re.escape(pattern).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.fullmatch(regex, fqn) is not None


def node_fqn(name: str, namespace: str) -> str:
    """``('collector', '/robot_0')`` -> ``/robot_0/collector``; no name -> :data:`UNNAMED`."""
    if name in RMW_UNKNOWN_NAMES:
        return UNNAMED
    return f"{namespace.rstrip('/')}/{name}" if namespace else f"/{name}"


def expected_publishers(role: str, namespace: str) -> dict[str, list[str]]:
    """The publishers the graph names for the control topics a node of ``role`` in ``namespace`` subscribes to,
    by topic as the node names it (relative names resolve in its namespace)."""
    ns = namespace.rstrip("/")
    if role == "policy":
        return {"task/goal": [f"{ns}/collector"], "/trainer/weights": ["/trainer"]}
    if role == "guard":
        return {"guard/commands_in": [f"{ns}/policy", f"{ns}/reset"]}
    if role == "trainer":
        return {"/trainer/transitions": ["/robot_*/collector"], "/trainer/episode_stats": ["/robot_*/collector"]}
    raise ValueError(f"no control topics known for role {role!r}")


class PublisherWatch:
    """See the module docstring.

    Args:
        expected: resolved topic name -> allowed publishers (fully qualified names or patterns).
        config: the PublisherWatchConfig (``allowed`` is added to every topic).

    Attributes:
        counts: ``unknown_publishers`` (now), ``unknown_publisher_sightings`` (appearances so far),
            ``publisher_checks``.
    """

    def __init__(self, expected: Mapping[str, Sequence[str]], config: PublisherWatchConfig | None = None) -> None:
        self.config = config or PublisherWatchConfig()
        self.expected = {topic: tuple(patterns) + self.config.allowed for topic, patterns in expected.items()}
        self._previous: dict[str, set[str]] = {}
        self._unnamed_before: set[str] = set()  # topics with an unnamed publisher at the previous check
        self.counts = {"unknown_publishers": 0, "unknown_publisher_sightings": 0, "publisher_checks": 0}

    def allowed(self, topic: str, fqn: str) -> bool:
        return any(_match(fqn, pattern) for pattern in self.expected.get(topic, ()))

    def check(self, observed: Mapping[str, Iterable[tuple[str, str]]]) -> PublisherReport:
        """Compare ``observed`` (topic -> ``(node_name, node_namespace)`` of each publisher) with the
        expected publishers; topics not watched are ignored, watched topics missing count as none. A
        publisher without a node name counts only when it is still unnamed at the next check (just after
        discovery rmw_fastrtps knows an endpoint before its node's name)."""
        report = PublisherReport()
        now: dict[str, set[str]] = {}
        unnamed_now: set[str] = set()
        for topic in self.expected:
            names = {node_fqn(name, ns) for name, ns in observed.get(topic, ())}
            if UNNAMED in names:
                unnamed_now.add(topic)
                if topic not in self._unnamed_before:
                    names.discard(UNNAMED)
            unknown = {fqn for fqn in names if not self.allowed(topic, fqn)}
            if unknown:
                now[topic] = unknown
                report.unknown[topic] = sorted(unknown)
            before = self._previous.get(topic, set())
            if unknown - before:
                report.new[topic] = sorted(unknown - before)
            if before - unknown:
                report.gone[topic] = sorted(before - unknown)
        self._previous = now
        self._unnamed_before = unnamed_now
        self.counts["publisher_checks"] += 1
        self.counts["unknown_publishers"] = report.count
        self.counts["unknown_publisher_sightings"] += sum(len(v) for v in report.new.values())
        return report
