-- Read an entry; on a miss, optionally take its lease. One round trip.
-- KEYS[1] entry, KEYS[2] lease, KEYS[3..] tag version keys (in the entry's tag order)
-- ARGV[1] "0": only look; "1": look, and take the lease on a miss;
--         "2": take the lease whatever is stored (refresh of a stale or
--         early-refreshed entry)
-- ARGV[2] lease token (random, unique per call: also the prefix of the
--         version given to a tag that has none yet), ARGV[3] lease ttl (ms),
-- ARGV[4] tag key ttl (ms)
-- Returns: the stored bytes on a hit (they start with the envelope's magic,
-- "RC\2"); otherwise one short string (cheaper to parse than an array),
-- its first byte what happened, its second `corrupt`:
--   "1" corrupt tokens     lease granted (tokens: the tags' current tokens,
--                          comma-separated)
--   "2" corrupt lease_pttl someone else holds the lease (it is marked as
--                          awaited, so its fill will publish a wake-up)
--   "0" corrupt            miss, no lease asked for
-- corrupt is 1 when the stored bytes had no valid header (they were deleted).
local ntags = #KEYS - 2
local cur = {}
if ntags > 0 then
  cur = redis.call('MGET', unpack(KEYS, 3))
end
local corrupt = 0
if ARGV[1] ~= '2' then
  local v = redis.call('GET', KEYS[1])
  if v then
    local semi = nil
    if string.sub(v, 1, 3) == 'RC\2' then
      semi = string.find(v, ';', 6, true)
    end
    if semi then
      local ok = true
      if ntags == 0 then
        ok = (semi == 6)
      else
        for i = 1, ntags do
          if not cur[i] then
            ok = false
            break
          end
        end
        if ok then
          ok = (table.concat(cur, ',') == string.sub(v, 6, semi - 1))
        end
      end
      if ok then
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
  for i = 1, ntags do
    if not cur[i] then
      cur[i] = ARGV[2] .. i
      redis.call('SET', KEYS[2 + i], cur[i], 'PX', ARGV[4])
    end
  end
  return '1' .. corrupt .. table.concat(cur, ',')
end
local holder = redis.call('GET', KEYS[2])
if holder and string.sub(holder, -1) ~= '+' then
  redis.call('SET', KEYS[2], holder .. '+', 'KEEPTTL')
end
return '2' .. corrupt .. redis.call('PTTL', KEYS[2])
