-- POST /v1/track, one event per request, as SDKs send them: each wrk
-- thread is its own set of 5,000 contacts, events stamped with the current
-- time, random UUID messageIds (so every event is new, never a
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
  counter = counter + 1
  local body = string.format('{"userId":"w%d-%d","event":"Email Link Clicked","messageId":"%s","timestamp":"%s"}',
    id, counter % 5000, uuid(), os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/v1/track", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, body)
end
