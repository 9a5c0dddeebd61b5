-- POST /v1/track with a fresh messageId per request.
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"userId":"w%d","event":"Email Link Clicked","messageId":"%s-%d","timestamp":"2025-05-01T10:00:00Z"}', counter % 5000, tostring(math.random(1, 1e9)), counter)
  return wrk.format("POST", "/v1/track", {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, body)
end
