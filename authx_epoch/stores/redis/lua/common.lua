-- Shared by every authx-epoch script (prepended when the scripts are loaded).
--
-- A record is a msgpack array: {epoch, created_at, bumped_at, reason, expires_at, uid}.
-- The epoch is kept as a string of decimal digits: Lua numbers are doubles, exact only below
-- 2^53, and epochs may be as large as 2^63 - 1. Absent fields are false here (a Lua table
-- cannot hold nil) and nil when written by Python; both read back as "absent".

local function absent_to_nil(value)
  if value == false then return nil end
  return value
end

-- Whether decimal string a is greater than decimal string b (neither has leading zeros).
local function greater(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- The decimal string one more than decimal string s.
local function increment(s)
  local digits = {}
  local carry = 1
  for i = #s, 1, -1 do
    local d = string.byte(s, i) - 48 + carry
    if d == 10 then d = 0; carry = 1 else carry = 0 end
    digits[i] = string.char(48 + d)
  end
  local result = table.concat(digits)
  if carry == 1 then result = '1' .. result end
  return result
end

local function pack_record(epoch, created_at, bumped_at, reason, expires_at, uid)
  return cmsgpack.pack({epoch, created_at, bumped_at or false, reason or false, expires_at or false, uid or false})
end

-- The record stored at key (in the hash field 'r' when hashed) if it is still live at now (by the
-- application's clock), else nil. A user's record lives in field 'r' of the user's hash, next to
-- the user's revoked jtis, so that eviction can only drop them together.
local function live_record(key, now, hashed)
  local raw
  if hashed then raw = redis.call('HGET', key, 'r') else raw = redis.call('GET', key) end
  if not raw then return nil, nil end
  local record = cmsgpack.unpack(raw)
  local expires_at = absent_to_nil(record[5])
  if expires_at and expires_at <= now then return nil, nil end
  return record, raw
end

-- Store value until expires_at (application clock), or forever when expires_at is nil.
-- The time to live is relative, so neither Redis' clock nor an injected test clock matters.
local function store(key, value, expires_at, now)
  if expires_at then
    local ttl = math.ceil((expires_at - now) * 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', key, value, 'PX', ttl)
  else
    redis.call('SET', key, value)
  end
end

local function ensure_global(key, clock, now)
  local raw = redis.call('GET', key)
  if not raw then
    raw = pack_record(clock, now, false, false, false, false)
    redis.call('SET', key, raw)
  end
  return raw
end

-- Make key live at least until expires_at (application clock), never shortening its life.
local function extend_ttl(key, expires_at, now)
  local ttl = math.ceil((expires_at - now) * 1000)
  if ttl < 1 then ttl = 1 end
  local current = redis.call('PTTL', key)
  if current < 0 or current < ttl then redis.call('PEXPIRE', key, ttl) end
end

-- Move the version of a user's hash (field 'v') on every write a check could see: a process's
-- local cache compares versions to confirm what it holds without reading it again. The version is
-- max(previous + 1, the server's clock in microseconds), so a hash that expired and was created
-- again never repeats a version some cache may still hold. (Below 2^53: exact as a Lua number.)
local function touch(key)
  local now_us = redis.call('TIME')
  local version = tonumber(now_us[1]) * 1000000 + tonumber(now_us[2])
  local old = tonumber(redis.call('HGET', key, 'v') or '0') or 0
  if old >= version then version = old + 1 end
  redis.call('HSET', key, 'v', string.format('%.0f', version))
end

-- Store a user's record in field 'r' of the user's hash, and the user's id in field 'u'. The id
-- stays out of the record (packed with uid false) so that neither value grows past Redis'
-- hash-max-listpack-value (64 bytes by default) for a UUID or an e-mail address as the id: one
-- longer value turns the whole hash into a hash table, which costs about 200 bytes more.
local function store_user(key, value, uid, expires_at, now)
  redis.call('HSET', key, 'r', value, 'u', uid)
  touch(key)
  extend_ttl(key, expires_at, now)
end

-- Drop expired revoked jtis of a user's hash, a few per write: the cursor of the scan is kept in
-- field 'c', so every field is visited in turn and the hash stays near its live size without a
-- cleanup job. (A small hash is one listpack: HSCAN then returns all of it at once, at most 128.)
local function prune(key, now)
  local cursor = redis.call('HGET', key, 'c') or '0'
  local found = redis.call('HSCAN', key, cursor, 'MATCH', 'j:*', 'COUNT', 16)
  local fields = found[2]
  for i = 1, #fields, 2 do
    local ok, entry = pcall(cmsgpack.unpack, fields[i + 1])
    if ok and type(entry) == 'table' and type(entry[1]) == 'number' and entry[1] <= now then
      redis.call('HDEL', key, fields[i])
    end
  end
  if found[1] == '0' then redis.call('HDEL', key, 'c') else redis.call('HSET', key, 'c', found[1]) end
end

-- A session record is a msgpack array:
-- {generation, first_generation, created_at, expires_at, uid, rotated_at, previous, revoked, session_id,
--  grace_used} with the generations as decimal strings and absent fields false (never nil: no holes).
-- Values written before grace_used existed have nine elements: s[10] is then nil, read as false.

-- The session record at key: (live record, nil) or (nil, expired record) or (nil, nil).
local function read_session(key, now)
  local raw = redis.call('GET', key)
  if not raw then return nil, nil end
  local s = cmsgpack.unpack(raw)
  if type(s[1]) == 'number' then
    -- Written before session records existed: {expires_at, session_id, uid}, a revoked id.
    s = {'0', '0', 0, s[1], false, false, false, true, s[2] or false, false}
  end
  if s[4] <= now then return nil, s end
  return s, nil
end

-- Whether the live session record s belongs to a user other than uid (a record without an owner,
-- or no uid given, blocks no one): mirrors SessionRecord.owned_by_another.
local function foreign(s, uid)
  return s ~= nil and s[5] and uid and s[5] ~= uid
end

local function put_session(key, s, now)
  local raw = cmsgpack.pack(s)
  store(key, raw, s[4], now)
  return raw
end

-- A new session record whose generation comes from the clock, never reusing an expired one's.
local function new_session(old, clock, now, expires_at, uid, sid, revoked)
  local generation = clock
  if old and not greater(clock, old[1]) then generation = increment(old[1]) end
  return {generation, generation, now, expires_at, uid or false, false, false, revoked, sid, false}
end

-- Ensure the session record lives at least until keep_until (extended to extend_to); return it packed.
-- The caller has checked that the record is not another user's.
local function ensure_session(key, clock, now, keep_until, extend_to, uid, sid)
  local s, old = read_session(key, now)
  if not s then
    return put_session(key, new_session(old, clock, now, extend_to, uid, sid, false), now)
  end
  if s[4] < keep_until then
    s[4] = extend_to
    if not s[5] then s[5] = uid end
    return put_session(key, s, now)
  end
  return cmsgpack.pack(s)
end
