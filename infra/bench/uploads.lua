-- wrk script for infra/bench/small_uploads.py: POSTs prepared multipart bodies, each
-- once. The file (first argument) holds them one after another, each preceded by its
-- length in 8 decimal digits; thread k of n (set up below) sends bodies k, k+n, k+2n...
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  bodies = {}
  local pos, i = 1, 0
  local n = tonumber(args[2])
  while pos <= #data do
    local len = tonumber(data:sub(pos, pos + 7))
    if i % n == id then
      table.insert(bodies, data:sub(pos + 8, pos + 7 + len))
    end
    pos = pos + 8 + len
    i = i + 1
  end
  next_body = 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=smalluploadsboundary"
end

function request()
  local body = bodies[next_body]
  if body == nil then
    wrk.thread:stop()
    body = bodies[1]
  end
  next_body = next_body + 1
  return wrk.format(nil, nil, nil, body)
end
