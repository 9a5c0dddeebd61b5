-- POST /v1/batch with 100 events per request, as SDKs send them: each wrk
-- thread is its own set of 10,000 contacts, events stamped with the
-- current time, messageIds unique per run, thread and event and increasing
-- (so every event is new and in order for its contact, never a duplicate).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local counter = 0
local run = os.time()
request = function()
  local items = {}
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  for i = 1, 100 do
    counter = counter + 1
    items[i] = string.format('{"type":"track","userId":"b%d-%d","event":"Email Link Clicked","messageId":"b%d-%d-%012d","timestamp":"%s"}',
      id, counter % 10000, run, id, counter, now)
  end
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
