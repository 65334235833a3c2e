-- KEYS[1]: a session record. ARGV[1]: the operation; ARGV[2]: its msgpack arguments.
--   'ensure' {clock, now, keep_until, extend_to, uid, session_id}: see ensure_session; returns the record.
--   'revoke' {clock, now, expires_at, session_id}: mark it revoked until at least expires_at
--     (a missing record is created revoked); returns the record, or false if nothing was written.
--   'rotate' {clock, now, presented, grace, expires_at}: rotation with reuse detection, exactly
--     records.rotate() in Python; returns {status, record or false}.
local op = ARGV[1]
local args = cmsgpack.unpack(ARGV[2])
local clock, now = args[1], args[2]
if op == 'ensure' then
  return ensure_session(KEYS[1], clock, now, args[3], args[4], args[5], args[6])
end
if op == 'revoke' then
  local expires_at, sid = args[3], args[4]
  local s, old = read_session(KEYS[1], now)
  if not s then
    if expires_at <= now then return false end
    s = new_session(old, clock, now, expires_at, false, sid, true)
  else
    s[8] = true
    if expires_at > s[4] then s[4] = expires_at end
  end
  return put_session(KEYS[1], s, now)
end
-- rotate
local presented, grace, expires_at = args[3], args[4], args[5]
local s = read_session(KEYS[1], now)
if not s then return {'missing', false} end
if s[8] then return {'revoked', cmsgpack.pack(s)} end
if greater(presented, s[1]) or greater(s[2], presented) then return {'missing', cmsgpack.pack(s)} end
if expires_at > s[4] then s[4] = expires_at end
if presented == s[1] then
  local generation = increment(s[1])
  if greater(clock, generation) then generation = clock end
  s[7] = s[1]
  s[1] = generation
  s[6] = now
  return {'rotated', put_session(KEYS[1], s, now)}
end
if s[7] and presented == s[7] and s[6] and now - s[6] <= grace then
  return {'grace', redis.call('GET', KEYS[1])}
end
s[8] = true
return {'reused', put_session(KEYS[1], s, now)}
