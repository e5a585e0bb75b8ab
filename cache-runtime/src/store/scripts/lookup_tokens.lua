-- lookup.lua for a Redis Cluster, where tag keys live in other slots than
-- the entry: the caller reads (and creates) the tags' tokens first, in a
-- separate step, and passes them here. Reading them before the lease is
-- taken is safe: the loader runs later still, so an entry never records a
-- token newer than what its loader read; a tag moved in between only makes
-- the entry a miss.
-- KEYS[1] entry, KEYS[2] lease
-- ARGV[1] "0": only look; "1": look, and take the lease on a miss;
--         "2": take the lease whatever is stored
-- ARGV[2] lease token, ARGV[3] lease ttl (ms),
-- ARGV[4] the tags' current tokens, comma-separated, in the entry's tag
--         order ("" without tags)
-- Returns what lookup.lua returns; a granted lease carries ARGV[4] back.
local corrupt = 0
if ARGV[1] ~= '2' then
  local v = redis.call('GET', KEYS[1])
  if v then
    local semi = nil
    if string.sub(v, 1, 3) == 'RC\2' then
      semi = string.find(v, ';', 6, true)
    end
    if semi then
      if string.sub(v, 6, semi - 1) == ARGV[4] then
        return v
      end
    else
      redis.call('DEL', KEYS[1])
      corrupt = 1
    end
  end
  if ARGV[1] ~= '1' then
    return '0' .. corrupt
  end
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return '1' .. corrupt .. ARGV[4]
end
local holder = redis.call('GET', KEYS[2])
if holder and string.sub(holder, -1) ~= '+' then
  redis.call('SET', KEYS[2], holder .. '+', 'KEEPTTL')
end
return '2' .. corrupt .. redis.call('PTTL', KEYS[2])
