-- New tokens for the version tags that exist: each keeps its lifetime, and
-- none is created (a key never read under another version has none).
-- KEYS[i] a version tag, ARGV[i] its new token. Returns how many existed.
local n = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('SET', KEYS[i], ARGV[i], 'KEEPTTL')
    n = n + 1
  end
end
return n
