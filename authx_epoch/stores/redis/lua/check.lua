-- Read-only (run with EVALSHA_RO): everything one check needs, in one command on a single Redis.
-- KEYS[1]: the user's hash; KEYS[2]: the global record; KEYS[3] (optional): the session record.
-- ARGV[1]: the field of the token's revoked jti ('' when the token has none).
-- Returns {user record, revoked jti entry, global record, session record}; false where absent.
local user = redis.call('HMGET', KEYS[1], 'r', ARGV[1])
local result = {user[1], user[2], redis.call('GET', KEYS[2]), false}
if KEYS[3] then result[4] = redis.call('GET', KEYS[3]) end
return result
