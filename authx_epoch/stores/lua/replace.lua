-- KEYS[1]: a record. ARGV[1]: the value expected there ('' for none); ARGV[2]: the new value;
-- ARGV[3]: when it expires (Unix seconds, application clock; '' for never); ARGV[4]: now.
-- Compare-and-set, for imports: the merge is computed by Python, and applied only if no one
-- wrote the record in between (otherwise the caller reads again and retries).
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
store(KEYS[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
