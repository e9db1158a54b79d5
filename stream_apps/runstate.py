"""Run state machine sanity, shared by all workers through Redis.

The first terminal event (COMPLETE/FAIL/ABORT) of a run is recorded atomically. A later event
of the run with a *different* event id is illegal when it is a different terminal state, or a
non-terminal state timed after the recorded end. Re-processing the same event id (a replay)
always gives the same verdict, so replays stay identical.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stream_apps.validation import TERMINAL

_CHECK = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ctype, ctime, cid = string.match(cur, '^(%u+)|(%d+)|(.+)$')
  if cid ~= ARGV[3] then
    if ARGV[4] == '1' then
      if ctype ~= ARGV[1] then return 'run already ended with ' .. ctype .. ', got ' .. ARGV[1] end
    elseif tonumber(ARGV[2]) > tonumber(ctime) then
      return ARGV[1] .. ' timed after the run ended with ' .. ctype
    end
  end
  return ''
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3], 'EX', ARGV[5])
end
return ''
"""


@dataclass(frozen=True, slots=True)
class RunTransition:
    run_id: str
    event_type: str
    event_time_us: int
    event_id: str


class RunStates:
    """Checks a batch of run transitions in order (one pipelined round trip)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = 30 * 24 * 3600) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._script = redis.register_script(_CHECK)

    def check(self, transitions: Sequence[RunTransition]) -> list[str]:
        """Per transition: '' if legal, else why not."""
        if not transitions:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for t in transitions:
            self._script(
                keys=[f"{self.prefix}:run:{t.run_id}"],
                args=[t.event_type, t.event_time_us, t.event_id, "1" if t.event_type in TERMINAL else "0", self.ttl_s],
                client=pipe,
            )
        return [r.decode() if isinstance(r, bytes) else str(r or "") for r in pipe.execute()]
