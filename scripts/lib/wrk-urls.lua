-- wrk: GET each path of the file $URLS in turn (one path per line), each thread from its own
-- place in the list. Used by scripts/bench-http.sh.
local paths = {}
for line in io.lines(os.getenv("URLS")) do
  paths[#paths + 1] = line
end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
