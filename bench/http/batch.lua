-- POST /v1/batch with 100 events per request.
local counter = 0
request = function()
  local items = {}
  for i = 1, 100 do
    counter = counter + 1
    items[i] = string.format('{"type":"track","userId":"b%d","event":"Email Link Clicked","messageId":"%s-%d","timestamp":"2025-05-01T10:00:00Z"}', counter % 10000, tostring(math.random(1, 1e9)), counter)
  end
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
