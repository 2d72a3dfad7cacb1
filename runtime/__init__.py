"""The single-threaded async runtime: trio plus one epoll reactor in the kernel in use.

``open_reactor(sys)`` gives a running Reactor; ``PerfStream`` and ``RingStream`` iterate
over what BPF programs send, asynchronously, without polling.
"""

from .reactor import Reactor, open_reactor
from .streams import PerfBatch, PerfStream, RingStream

__all__ = ["PerfBatch", "PerfStream", "Reactor", "RingStream", "open_reactor"]
