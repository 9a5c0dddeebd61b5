-- POST /v1/track, one event per request, as SDKs send them: each wrk
-- thread is its own set of 5,000 contacts, events stamped with the current
-- time, messageIds unique per run, thread and request and increasing (so
-- every event is new and in order for its contact, never a duplicate).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local counter = 0
local run = os.time()
request = function()
  counter = counter + 1
  local body = string.format('{"userId":"w%d-%d","event":"Email Link Clicked","messageId":"t%d-%d-%012d","timestamp":"%s"}',
    id, counter % 5000, run, id, counter, os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/v1/track", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, body)
end
