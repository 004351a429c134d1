"""CDR bytes of the project's std_msgs arrays for bags that tests write with ``rosbags``."""
from __future__ import annotations

from typing import Any

import numpy as np

from async_naf.wire import layouts

F64 = "std_msgs/msg/Float64MultiArray"


def array_bytes(store: Any, arr: layouts.ArrayMsg) -> bytes:
    """``arr`` as a serialised std_msgs/Float64MultiArray (CDR), with its layout's labels, sizes, strides."""
    t = store.types
    dims = [t["std_msgs/msg/MultiArrayDimension"](label=lab, size=s, stride=st)
            for lab, s, st in zip(arr.labels, arr.sizes, arr.strides)]
    msg = t[F64](layout=t["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
                 data=np.asarray(arr.data, np.float64))
    return store.serialize_cdr(msg, F64)
