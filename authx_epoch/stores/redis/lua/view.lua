-- Read-only (run with EVALSHA_RO): what a process's local cache keeps of one user, in one command.
-- KEYS[1]: the user's hash; KEYS[2] (optional): the global record; KEYS[3] (optional): the session record.
-- ARGV[1]: the field of the token's revoked jti ('' when the token has none);
-- ARGV[2]: the most fields sent whole.
-- Returns {fields, complete, global record, session record} (false where absent). When the hash
-- has at most ARGV[2] fields, fields is all of it (HGETALL: the record, the version and every
-- revoked jti of the user) and complete is 1; otherwise fields is {'r', record, 'v', version,
-- ARGV[1], entry} and complete is 0, so a user with very many revoked tokens costs no more.
local fields, complete
if redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[2]) then
  fields, complete = redis.call('HGETALL', KEYS[1]), 1
else
  local found = redis.call('HMGET', KEYS[1], 'r', 'v', ARGV[1])
  fields, complete = {'r', found[1], 'v', found[2], ARGV[1], found[3]}, 0
end
local result = {fields, complete, false, false}
if KEYS[2] then result[3] = redis.call('GET', KEYS[2]) end
if KEYS[3] then result[4] = redis.call('GET', KEYS[3]) end
return result
