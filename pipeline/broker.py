"""The worker's broker. ``dramatiq pipeline.broker pipeline.actors`` imports this module first,
and Dramatiq's CLI expects it to set the global broker as a side effect of that import; the
web process builds its own through ``pipeline.queues.build_broker`` and never imports this.
"""

from __future__ import annotations

import dramatiq

from pipeline.queues import build_broker
from pipeline.settings import Settings

broker = build_broker(Settings.from_env())
dramatiq.set_broker(broker)
