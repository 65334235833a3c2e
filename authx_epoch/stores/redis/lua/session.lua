-- KEYS[1]: a session record. ARGV[1]: the operation; ARGV[2]: its msgpack arguments.
--   'ensure' {clock, now, keep_until, extend_to, uid, session_id}: see ensure_session; returns
--     {'ok', record}, or {'owner', false} when the session belongs to another user (nothing written).
--   'revoke' {clock, now, expires_at, session_id, uid or false}: mark it revoked until at least
--     expires_at (a missing record is created revoked, owned by uid); returns {'known', record} when a
--     live record existed, {'unknown', record or false (nothing written)} when not, or
--     {'owner', false} when uid is given and the record is another user's (nothing written).
--   'rotate' {clock, now, presented, grace, expires_at, uid}: rotation with reuse detection, exactly
--     records.rotate() in Python; returns {status, record or false}.
local op = ARGV[1]
local args = cmsgpack.unpack(ARGV[2])
local clock, now = args[1], args[2]
if op == 'ensure' then
  if foreign(read_session(KEYS[1], now), args[5]) then return {'owner', false} end
  return {'ok', ensure_session(KEYS[1], clock, now, args[3], args[4], args[5], args[6])}
end
if op == 'revoke' then
  local expires_at, sid, uid = args[3], args[4], args[5]
  local s, old = read_session(KEYS[1], now)
  if not s then
    if expires_at <= now then return {'unknown', false} end
    return {'unknown', put_session(KEYS[1], new_session(old, clock, now, expires_at, uid, sid, true), now)}
  end
  if foreign(s, uid) then return {'owner', false} end
  s[8] = true
  if not s[5] and uid then s[5] = uid end
  if expires_at > s[4] then s[4] = expires_at end
  return {'known', put_session(KEYS[1], s, now)}
end
-- rotate
local presented, grace, expires_at, uid = args[3], args[4], args[5], args[6]
local s = read_session(KEYS[1], now)
if not s or foreign(s, uid) then return {'missing', false} end
if s[8] then return {'revoked', cmsgpack.pack(s)} end
if greater(presented, s[1]) or greater(s[2], presented) then return {'missing', cmsgpack.pack(s)} end
if expires_at > s[4] then s[4] = expires_at end
if presented == s[1] then
  local generation = increment(s[1])
  if greater(clock, generation) then generation = clock end
  s[7] = s[1]
  s[1] = generation
  s[6] = now
  s[10] = false
  return {'rotated', put_session(KEYS[1], s, now)}
end
-- The replaced generation within the grace answers once; presented again, it is a reuse.
if s[7] and presented == s[7] and s[6] and now - s[6] <= grace and not s[10] then
  s[10] = true
  return {'grace', put_session(KEYS[1], s, now)}
end
s[8] = true
return {'reused', put_session(KEYS[1], s, now)}
