-- KEYS[1]: a record. ARGV[1]: the value expected there ('' for none); ARGV[2]: the new value;
-- ARGV[3]: when it expires (Unix seconds, application clock; '' for never); ARGV[4]: now;
-- ARGV[5]: the hash field holding the record ('' when the key is a plain string);
-- ARGV[6] (with a field): the user's id, for field 'u'.
-- Compare-and-set, for imports: the merge is computed by Python, and applied only if no one
-- wrote the record in between (otherwise the caller reads again and retries).
local field = ARGV[5]
local expires_at, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local current
if field ~= '' then current = redis.call('HGET', KEYS[1], field) else current = redis.call('GET', KEYS[1]) end
if (current or '') ~= ARGV[1] then return 0 end
if field == '' then
  store(KEYS[1], ARGV[2], expires_at, now)
else
  if ARGV[6] then redis.call('HSET', KEYS[1], field, ARGV[2], 'u', ARGV[6]) else redis.call('HSET', KEYS[1], field, ARGV[2]) end
  touch(KEYS[1])
  if expires_at then extend_ttl(KEYS[1], expires_at, now) else redis.call('PERSIST', KEYS[1]) end
end
return 1
