-- Store a loaded value only if the caller still holds the lease (compare-and-set).
-- KEYS[1] entry, KEYS[2] lease
-- ARGV[1] token, ARGV[2] envelope, ARGV[3] ttl (ms), ARGV[4] wake-up channel
-- Returns 1 when stored, 0 when the lease was lost (invalidated or expired).
-- A lease marked as awaited ("token+") publishes the entry key on the channel.
local held = redis.call('GET', KEYS[2])
if held == ARGV[1] or held == ARGV[1] .. '+' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  if held ~= ARGV[1] then
    redis.call('PUBLISH', ARGV[4], KEYS[1])
  end
  return 1
end
return 0
