-- A write-behind call in one round trip: store the value (as set.lua does)
-- and append the call to the function's stream. Both or neither.
-- KEYS[1] entry, KEYS[2] lease, KEYS[3] stream, KEYS[4..] tag version keys
-- ARGV[1] envelope head, ARGV[2] envelope tail, ARGV[3] ttl (ms),
-- ARGV[4] tag key ttl (ms), ARGV[5] fresh random prefix for new tag tokens,
-- ARGV[6] wake-up channel, ARGV[7] the key as callers wrote it, ARGV[8] the
-- call's serialized arguments, ARGV[9] their field: 'a' (plain) or 'A'
-- (sealed)
local ntags = #KEYS - 3
local cur = {}
if ntags > 0 then
  cur = redis.call('MGET', unpack(KEYS, 4))
  for i = 1, ntags do
    if not cur[i] then
      cur[i] = ARGV[5] .. i
      redis.call('SET', KEYS[3 + i], cur[i], 'PX', ARGV[4])
    end
  end
end
local id = redis.call('XADD', KEYS[3], '*', 'k', ARGV[7], ARGV[9], ARGV[8])
redis.call('SET', KEYS[1], ARGV[1] .. table.concat(cur, ',') .. ';' .. ARGV[2], 'PX', ARGV[3])
local held = redis.call('GET', KEYS[2])
if held then
  redis.call('DEL', KEYS[2])
  if string.sub(held, -1) == '+' then
    redis.call('PUBLISH', ARGV[6], KEYS[1])
  end
end
return id
