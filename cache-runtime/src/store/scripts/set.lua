-- Store a value unconditionally, recording the tags' current tokens, and
-- cancel any lease so that an older load can no longer overwrite it.
-- KEYS[1] entry, KEYS[2] lease, KEYS[3..] tag version keys
-- ARGV[1] envelope head, ARGV[2] envelope tail, ARGV[3] ttl (ms),
-- ARGV[4] tag key ttl (ms), ARGV[5] fresh random prefix for new tag tokens,
-- ARGV[6] wake-up channel (callers waiting on the cancelled lease look again)
local ntags = #KEYS - 2
local cur = {}
if ntags > 0 then
  cur = redis.call('MGET', unpack(KEYS, 3))
  for i = 1, ntags do
    if not cur[i] then
      cur[i] = ARGV[5] .. i
      redis.call('SET', KEYS[2 + i], cur[i], 'PX', ARGV[4])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. table.concat(cur, ',') .. ';' .. ARGV[2], 'PX', ARGV[3])
local held = redis.call('GET', KEYS[2])
if held then
  redis.call('DEL', KEYS[2])
  if string.sub(held, -1) == '+' then
    redis.call('PUBLISH', ARGV[6], KEYS[1])
  end
end
return 1
