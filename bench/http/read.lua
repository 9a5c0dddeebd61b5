-- GET /api/v1/contacts/{id} over CONTACTS generated contacts (default 10,000).
local contacts = tonumber(os.getenv("CONTACTS") or "10000")
request = function()
  return wrk.format("GET", string.format("/api/v1/contacts/u%08d", math.random(0, contacts - 1)), {["Authorization"] = os.getenv("READ")})
end
