"""spool: the Python client and worker library of the spool job queue server (spoold).

    import spool
    with spool.Client("127.0.0.1:7711") as c:
        job = c.put("mail", b'{"to": "a@example.com"}')
        print(c.wait(job.id, timeout=60).result)

Standard library only; protocol versions 1 and 2 of docs/PROTOCOL.md.
"""

from .aio import AsyncClient
from .client import DEFAULT_ADDRESS, Client, Pipeline
from .codec import (AckBatchResult, CountResult, Delivery, Durability, HelloReply, Job, JobSpec,
                    JobState, PutResult, QueueInfo, QueueStats, Stats, TouchResult)
from .errors import *  # noqa: F401,F403  (one class per error code)
from .errors import __all__ as _error_names
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client", "Pipeline", "Worker", "DEFAULT_ADDRESS", "AckBatchResult",
    "CountResult", "Delivery", "Durability", "HelloReply", "Job", "JobSpec", "JobState",
    "PutResult", "QueueInfo", "QueueStats", "Stats", "TouchResult", *_error_names,
]
