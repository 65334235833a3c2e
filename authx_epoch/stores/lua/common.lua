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

-- The record stored at key if it is still live at now (by the application's clock), else nil.
local function live_record(key, now)
  local raw = redis.call('GET', key)
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
