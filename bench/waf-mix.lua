-- bench/waf-mix.lua: wrk script for bench/waf.sh. Sends the requests of a mix file
-- (bench/waf-benign.txt or bench/waf-attack.txt) in turn and counts the responses by
-- status code.
--
--   wrk -s bench/waf-mix.lua -H 'Host: ...' https://127.0.0.1:PORT/ -- bench/waf-benign.txt
--
-- A mix file has one request a line, METHOD<TAB>PATH[<TAB>BODY]; '#' lines and blank
-- lines are skipped. A request with a body gets Content-Type: application/json. Every
-- request also carries the headers given to wrk with -H. At the end it prints one line:
--   status 200=N 403=M ...

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  if file == nil then
    error("waf-mix.lua: usage: wrk -s waf-mix.lua URL -- MIX_FILE")
  end
  mix = {}
  for line in io.lines(file) do
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
      if method == nil then
        error("waf-mix.lua: " .. file .. ": bad line: " .. line)
      end
      local headers = {}
      for k, v in pairs(wrk.headers) do headers[k] = v end
      if body == "" then
        body = nil
      else
        headers["Content-Type"] = "application/json"
      end
      table.insert(mix, wrk.format(method, path, headers, body))
    end
  end
  if #mix == 0 then
    error("waf-mix.lua: " .. file .. ": no requests")
  end
  next_request = 1
  counts = {}
end

function request()
  local r = mix[next_request]
  next_request = next_request % #mix + 1
  return r
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  local keys = {}
  for status in pairs(total) do table.insert(keys, status) end
  table.sort(keys)
  local parts = {}
  for _, status in ipairs(keys) do
    table.insert(parts, string.format("%d=%d", status, total[status]))
  end
  io.write("status " .. table.concat(parts, " ") .. "\n")
end
