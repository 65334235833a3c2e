-- Read-only (run with EVALSHA_RO): what a process's local cache needs to confirm what it holds.
-- KEYS[1]: the global record; KEYS[2 .. ARGV[1] + 1]: users' hashes; the rest: session records.
-- Returns {global record, {version of each user}, {each session record}}: a user's version is ''
-- when the user has no hash at all, false when the hash has no version (written before versions).
local users = tonumber(ARGV[1])
local versions, sessions = {}, {}
for i = 2, users + 1 do
  local version = redis.call('HGET', KEYS[i], 'v')
  if not version and redis.call('EXISTS', KEYS[i]) == 0 then version = '' end
  versions[i - 1] = version
end
for i = users + 2, #KEYS do sessions[i - users - 1] = redis.call('GET', KEYS[i]) end
return {redis.call('GET', KEYS[1]), versions, sessions}
