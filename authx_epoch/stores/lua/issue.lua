-- KEYS[1]: the user record; KEYS[2] (single Redis only): the global record.
-- ARGV[1]: msgpack {clock_epoch, now, keep_until, extend_to, uid}.
-- Create the user record if it is missing or expired; make it live at least until keep_until
-- (extending it to extend_to, so that the next mints need no write); never shorten it.
-- Returns {user record, global record (when KEYS[2] is given)}.
local args = cmsgpack.unpack(ARGV[1])
local clock, now, keep_until, extend_to, uid = args[1], args[2], args[3], args[4], args[5]
local result = {}
local record, raw = live_record(KEYS[1], now)
if not record then
  raw = pack_record(clock, now, false, false, extend_to, uid)
  store(KEYS[1], raw, extend_to, now)
else
  local expires_at = absent_to_nil(record[5])
  if expires_at and expires_at < keep_until then
    raw = pack_record(record[1], record[2], absent_to_nil(record[3]), absent_to_nil(record[4]), extend_to, uid)
    store(KEYS[1], raw, extend_to, now)
  end
end
result[1] = raw
if KEYS[2] then result[2] = ensure_global(KEYS[2], clock, now) end
return result
