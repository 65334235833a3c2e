-- KEYS[1]: the user's hash; then, on a single Redis only, the global record and (with a session
-- id) the session record.
-- ARGV[1]: msgpack {clock_epoch, now, keep_until, extend_to, uid, with_global, session_id or false}.
-- Create the user record if it is missing or expired; make it live at least until keep_until
-- (extending it to extend_to, so that the next mints need no write); never shorten it. The same
-- for the session record. Returns {user record, global record or false, session record or false};
-- {false, false, false, 'owner'} when the session belongs to another user (nothing is written).
local args = cmsgpack.unpack(ARGV[1])
local clock, now, keep_until, extend_to, uid = args[1], args[2], args[3], args[4], args[5]
local with_global, sid = args[6], args[7]
local session_key = false
if sid then
  if with_global then session_key = KEYS[3] else session_key = KEYS[2] end
  -- First, before any write: a session of another user refuses the whole mint.
  if foreign(read_session(session_key, now), uid) then return {false, false, false, 'owner'} end
end
local record, raw = live_record(KEYS[1], now, true)
if not record then
  raw = pack_record(clock, now, false, false, extend_to, false)
  store_user(KEYS[1], raw, uid, extend_to, now)
  prune(KEYS[1], now)
else
  local expires_at = absent_to_nil(record[5])
  if expires_at and expires_at < keep_until then
    raw = pack_record(record[1], record[2], absent_to_nil(record[3]), absent_to_nil(record[4]), extend_to, false)
    store_user(KEYS[1], raw, uid, extend_to, now)
    prune(KEYS[1], now)
  end
end
local result = {raw, false, false}
if with_global then result[2] = ensure_global(KEYS[2], clock, now) end
if sid then result[3] = ensure_session(session_key, clock, now, keep_until, extend_to, uid, sid) end
return result
