-- GCRA for many webhooks in one call: KEYS[i] is webhook i's state (its theoretical arrival
-- time, TAT, in microseconds); ARGV[3i-2..3i] are its emission interval (µs), its limit (the
-- burst: a full minute's calls may arrive at once) and how many calls ask now. Returns, per
-- key, how many calls were granted and, when some were not, the microseconds until the next
-- would be. Redis's clock is the only clock, so every API replica sees the same limit.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  local wanted = tonumber(ARGV[3 * i])
  local capacity = interval * limit
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local free = math.floor((now + capacity - tat) / interval)
  if free < 0 then free = 0 end
  local granted = math.min(wanted, free)
  if granted > 0 then
    tat = tat + granted * interval
    redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local retry = 0
  if granted < wanted then
    retry = tat + interval - capacity - now
    if retry < 0 then retry = 0 end
  end
  out[2 * i - 1] = granted
  out[2 * i] = retry
end
return out
