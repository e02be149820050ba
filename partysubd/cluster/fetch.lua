-- What a room's stream holds after a seq, read in one step with the seq and
-- epoch it belongs to. KEYS: stream, seq, epoch. ARGV: after.
local epoch = redis.call('GET', KEYS[3])
if not epoch then return {false, 0, {}} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local wanted = last - tonumber(ARGV[1])
if wanted <= 0 then return {epoch, last, {}} end
return {epoch, last, redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', wanted)}
