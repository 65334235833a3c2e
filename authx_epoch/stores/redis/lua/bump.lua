-- KEYS[1]: a user's hash or the global record.
-- ARGV[1]: msgpack {clock_epoch, now, reason, expires_at (nil for the global record), uid (nil for it too)}.
-- Atomically move the epoch to max(current + 1, clock_epoch); the record's life is extended to
-- expires_at, never shortened. Returns the new record.
local args = cmsgpack.unpack(ARGV[1])
local clock, now, reason, expires_at, uid = args[1], args[2], args[3], args[4], args[5]
local hashed = uid ~= nil
local epoch, created_at = clock, now
local record = live_record(KEYS[1], now, hashed)
if record then
  local next_epoch = increment(record[1])
  if greater(next_epoch, clock) then epoch = next_epoch end
  created_at = record[2]
  local old_expiry = absent_to_nil(record[5])
  if expires_at and old_expiry and old_expiry > expires_at then expires_at = old_expiry end
end
local raw = pack_record(epoch, created_at, now, reason, expires_at, false)
if hashed then
  store_user(KEYS[1], raw, uid, expires_at, now)
  prune(KEYS[1], now)
else
  store(KEYS[1], raw, expires_at, now)
end
return raw
