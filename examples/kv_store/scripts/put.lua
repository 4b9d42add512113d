-- wrk script: PUT of a 100-character value to one of 100,000 keys, chosen
-- at random per request (seeded per thread, so runs are comparable).
local keys = 100000
local value = string.rep("v", 100)

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed)
  wrk.method = "PUT"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"value":"' .. value .. '"}'
end

function request()
  return wrk.format(nil, "/kv/k" .. math.random(0, keys - 1))
end
