"""Recording (beside the loop): every run's topics into one rosbag2 bag, and what a bag holds.

The recorder node subscribes raw (serialised CDR, never deserialised) to the topics the graph description
names and hands the bytes to :class:`~async_naf.recording.writer.BagWriter`, which writes them from a thread
of its own through ``rosbags`` (MCAP, metadata version 9, offered QoS profiles and type hashes, as
``ros2 bag info`` / ``ros2 bag play`` on Jazzy expect). :mod:`async_naf.recording.info` reads a bag back:
counts, rates, gaps, header-stamp lag, episodes, and which tasks the bag can feed.
"""
