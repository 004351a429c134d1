"""The recorder's readiness message (``/recorder/ready``, std_msgs/String, reliable + transient local).

A best-effort publisher sends only to the readers it has matched over DDS, and the graph view (which node
subscribes to what) can arrive before the matching: a collector that starts its first episode as soon as
the graph shows the recorder's subscriptions can lose that episode's joint states. The recorder therefore
says itself which robot namespaces it has fully matched (:mod:`async_naf.recording.ready`), and a recorded
run's collectors start their first episode only once their namespace is named.

Several recorders can publish on one readiness topic: a run split over hosts (``async-naf train --part``)
starts one ``/recorder`` per host, each recording that host's robots and naming only those, and the topic
keeps each one's last message (transient local, depth 1 per publisher). A collector therefore takes the
union of what the messages name (:func:`merge_ready`), never the last message alone, which would depend on
the order the recorders' messages arrive in.

Format ``async_naf.recorder_ready.v1``: the layout name, ``:``, then the ready namespaces separated by
single spaces, sorted (``async_naf.recorder_ready.v1: /robot_0 /robot_1``; none: nothing after the colon).
"""
from __future__ import annotations

from collections.abc import Iterable

RECORDER_READY = "async_naf.recorder_ready.v1"
MAX_NAMESPACES = 4096


def encode_ready(namespaces: Iterable[str]) -> str:
    """The message text for these namespaces (absolute, no spaces; sorted, duplicates removed)."""
    names = sorted(set(namespaces))
    for ns in names:
        if not ns.startswith("/") or " " in ns or ":" in ns:
            raise ValueError(f"a ready namespace must be absolute without spaces or colons, got {ns!r}")
    return f"{RECORDER_READY}:" + "".join(f" {ns}" for ns in names)


def decode_ready(text: str) -> frozenset[str]:
    """The namespaces a readiness message names.

    Raises:
        ValueError: another layout or version, a malformed list, or more than MAX_NAMESPACES names.
    """
    label, sep, rest = text.partition(":")
    if not sep or label != RECORDER_READY:
        raise ValueError(f"not an {RECORDER_READY} message: {text[:80]!r}")
    names = rest.split()
    if len(names) > MAX_NAMESPACES:
        raise ValueError(f"{len(names)} namespaces in a readiness message (at most {MAX_NAMESPACES})")
    bad = [n for n in names if not n.startswith("/")]
    if bad:
        raise ValueError(f"readiness message names relative namespaces: {bad[:3]}")
    return frozenset(names)


def merge_ready(known: frozenset[str], text: str) -> frozenset[str]:
    """``known`` with the namespaces a readiness message names added (see the module docstring: one
    recorder's message never takes back what another one's said).

    Raises:
        ValueError: as :func:`decode_ready`.
    """
    return known | decode_ready(text)
