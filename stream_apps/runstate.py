"""Run state machine sanity, shared by all workers through Redis.

The first terminal event (COMPLETE/FAIL/ABORT) of a run is recorded atomically. A later event
of the run with a *different* event id is an anomaly when it is a different terminal state, or a
non-terminal state timed after the recorded end; a non-terminal event timed before the end is
ordinary, however late it arrives. The batch processor keeps anomalous events and flags them
(``run_anomaly``); nothing is dropped for its order. Re-processing the same event id (a replay)
always gives the same verdict, so replays stay identical.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lineage.keyspace import KeySpace
from stream_apps.validation import TERMINAL

# One call checks many transitions in order (KEYS[i] <- ARGV[4i-3..4i]; ARGV[#ARGV] = TTL), so a
# run seen twice in a batch sees its own earlier terminal state, exactly as separate calls would.
_CHECK = """
local ttl = ARGV[#ARGV]
local out = {}
for i = 1, #KEYS do
  local etype, etime, eid, terminal = ARGV[4*i-3], ARGV[4*i-2], ARGV[4*i-1], ARGV[4*i]
  local verdict = ''
  local cur = redis.call('GET', KEYS[i])
  if cur then
    local ctype, ctime, cid = string.match(cur, '^(%u+)|(%d+)|(.+)$')
    if cid ~= eid then
      if terminal == '1' then
        if ctype ~= etype then verdict = 'run already ended with ' .. ctype .. ', got ' .. etype end
      elseif tonumber(etime) > tonumber(ctime) then
        verdict = etype .. ' timed after the run ended with ' .. ctype
      end
    end
  elseif terminal == '1' then
    redis.call('SET', KEYS[i], etype .. '|' .. etime .. '|' .. eid, 'EX', ttl)
  end
  out[i] = verdict
end
return out
"""
#: Transitions per script call: bounds how long one call holds Redis.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class RunTransition:
    run_id: str
    event_type: str
    event_time_us: int
    event_id: str


class RunStates:
    """Checks a batch of run transitions in order (one pipelined round trip, one script call per chunk)."""

    def __init__(self, redis: Any, space: KeySpace, ttl_s: int = 30 * 24 * 3600) -> None:
        self.redis = redis
        self.space = space
        self.ttl_s = ttl_s
        self._script = redis.register_script(_CHECK)

    def check(self, transitions: Sequence[RunTransition]) -> list[str]:
        """Per transition: '' if legal, else why not."""
        if not transitions:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(transitions), CHUNK):
            chunk = transitions[start : start + CHUNK]
            args: list[Any] = []
            for t in chunk:
                args += [t.event_type, t.event_time_us, t.event_id, "1" if t.event_type in TERMINAL else "0"]
            args.append(self.ttl_s)
            self._script(keys=[self.space.run(t.run_id) for t in chunk], args=args, client=pipe)
        return [r.decode() if isinstance(r, bytes) else str(r or "") for part in pipe.execute() for r in part]
