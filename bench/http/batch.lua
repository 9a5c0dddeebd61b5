-- POST /v1/batch with 100 events per request, as SDKs send them: each wrk
-- thread is its own set of 10,000 contacts, events stamped with the
-- current time, random UUID messageIds (so every event is new, never a
-- duplicate).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "ingest.lua")
local counter = 0
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
