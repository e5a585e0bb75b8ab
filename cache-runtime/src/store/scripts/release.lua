-- Give a lease back without storing anything, if the caller still holds it;
-- callers waiting on it are woken so that one of them can take it.
-- KEYS[1] lease, KEYS[2] entry; ARGV[1] token, ARGV[2] wake-up channel
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or held == ARGV[1] .. '+' then
  redis.call('DEL', KEYS[1])
  if held ~= ARGV[1] then
    redis.call('PUBLISH', ARGV[2], KEYS[2])
  end
  return 1
end
return 0
