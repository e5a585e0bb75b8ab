-- set.lua for a Redis Cluster: the envelope arrives complete (the caller
-- read the tags' tokens in a separate step, since tag keys live in other
-- slots). Stores it unconditionally and cancels any lease, so that an older
-- load can no longer overwrite it.
-- KEYS[1] entry, KEYS[2] lease
-- ARGV[1] envelope, ARGV[2] ttl (ms), ARGV[3] wake-up channel (callers
-- waiting on the cancelled lease look again)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local held = redis.call('GET', KEYS[2])
if held then
  redis.call('DEL', KEYS[2])
  if string.sub(held, -1) == '+' then
    redis.call('PUBLISH', ARGV[3], KEYS[1])
  end
end
return 1
