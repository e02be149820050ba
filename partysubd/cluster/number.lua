-- Numbering a room's messages (rooms with a history): one script per batch, so
-- the room's sequence, its stream and the publish to the other daemons happen
-- as one step and every daemon sees the stream's order. Keys share the room
-- channel's hash tag, so in a Redis Cluster they live on the channel's shard.
--   KEYS: stream, seq, epoch
--   ARGV: channel, origin, max messages, history ms, a fresh epoch,
--         idempotency key prefix, PUBLISH or SPUBLISH, messages lost before
--         these (their numbers are skipped: a hole no resume can cross),
--         then (idem, item) pairs
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1], KEYS[2])
end
local ttl = tonumber(ARGV[4])
if tonumber(ARGV[8]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[8])
end
local out = {}
for i = 9, #ARGV, 2 do
  local fresh = true
  if ARGV[i] ~= '' then
    fresh = redis.call('SET', ARGV[6] .. ARGV[i], '1', 'NX', 'PX', ttl)
  end
  if fresh then
    local seq = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 's', seq, 'm', ARGV[i + 1])
    out[#out + 1] = {seq, ARGV[i + 1]}
  end
end
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl
redis.call('XTRIM', KEYS[1], 'MINID', math.max(horizon, 0) .. '-0')
redis.call('SET', KEYS[3], epoch, 'PX', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if #out > 0 then
  redis.call(ARGV[7], ARGV[1], cmsgpack.pack({ARGV[2], epoch, out}))
end
return #out
