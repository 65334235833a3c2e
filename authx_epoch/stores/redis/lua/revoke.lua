-- KEYS[1]: a user's hash. ARGV[1]: msgpack {expires_at, jti}; ARGV[2]: the jti's field; ARGV[3]: now;
-- ARGV[4]: the user's id (kept in field 'u', once for the user's record and revoked jtis).
-- Keep the revoked jti in the user's hash until expires_at, never shortening an existing entry;
-- the hash lives at least that long (Redis drops it when its last entry has expired).
local entry = cmsgpack.unpack(ARGV[1])
local now = tonumber(ARGV[3])
local expires_at = entry[1]
if expires_at <= now then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old and cmsgpack.unpack(old)[1] >= expires_at then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1], 'u', ARGV[4])
touch(KEYS[1])
extend_ttl(KEYS[1], expires_at, now)
prune(KEYS[1], now)
return 1
