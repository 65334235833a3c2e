-- KEYS[1]: a revoked jti or session id. ARGV[1]: msgpack {expires_at, id, uid}. ARGV[2]: now.
-- Keep the entry until expires_at (Redis drops it then), never shortening an existing entry.
local entry = cmsgpack.unpack(ARGV[1])
local now = tonumber(ARGV[2])
local expires_at = entry[1]
if expires_at <= now then return 0 end
local old = redis.call('GET', KEYS[1])
if old and cmsgpack.unpack(old)[1] >= expires_at then return 0 end
store(KEYS[1], ARGV[1], expires_at, now)
return 1
