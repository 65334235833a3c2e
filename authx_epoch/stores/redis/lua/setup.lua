-- KEYS[1]: the global record. ARGV[1]: msgpack {clock_epoch, now}.
-- Create the global record if it is missing; return it.
local args = cmsgpack.unpack(ARGV[1])
return ensure_global(KEYS[1], args[1], args[2])
