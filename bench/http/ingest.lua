-- Shared by the ingest scripts (loaded with dofile): thread ids and random
-- UUID v4 messageIds, as Segment's and RudderStack's SDKs make them: ids in
-- no order, so each new event lands on its own page of the store's
-- message-id index as a real client's do. Seeded per thread and run.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
end
function uuid()
  local r = math.random
  return string.format('%04x%04x-%04x-4%03x-%04x-%04x%04x%04x',
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff), r(0x8000, 0xbfff),
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end
