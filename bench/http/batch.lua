-- POST /v1/batch with 100 events per request, as SDKs send them: each wrk
-- thread is its own set of 10,000 contacts, events stamped with the
-- current time, random UUID messageIds (so every event is new, never a
-- duplicate).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local counter = 0
-- A random UUID v4, as Segment's and RudderStack's SDKs make messageIds:
-- ids in no order, so each new event lands on its own page of the store's
-- message-id index as a real client's do. Seeded per thread and run.
local function uuid()
  local r = math.random
  return string.format('%04x%04x-%04x-4%03x-%04x-%04x%04x%04x',
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff), r(0x8000, 0xbfff),
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
end
request = function()
  local items = {}
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  for i = 1, 100 do
    counter = counter + 1
    items[i] = string.format('{"type":"track","userId":"b%d-%d","event":"Email Link Clicked","messageId":"%s","timestamp":"%s"}',
      id, counter % 10000, uuid(), now)
  end
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
