-- GET /api/v1/contacts/{id} over 10,000 contacts.
request = function()
  return wrk.format("GET", string.format("/api/v1/contacts/u%08d", math.random(0, 9999)), {["Authorization"] = os.getenv("READ")})
end
