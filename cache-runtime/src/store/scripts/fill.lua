-- Store a loaded value only if the caller still holds the lease (compare-and-set).
-- KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] envelope, ARGV[3] ttl (ms)
-- Returns 1 when stored, 0 when the lease was lost (invalidated or expired).
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
