-- POST /v1/track, one event per request, as SDKs send them: each wrk
-- thread is its own set of 5,000 contacts, events stamped with the current
-- time, random UUID messageIds (so every event is new, never a
-- duplicate).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "ingest.lua")
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"userId":"w%d-%d","event":"Email Link Clicked","messageId":"%s","timestamp":"%s"}',
    id, counter % 5000, uuid(), os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/v1/track", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, body)
end
