-- bench/web.lua: wrk script for bench/web.sh.
--
-- Every request is GET /api/users/{id} with id drawn uniformly from [LO, HI], the ids the
-- script seeded. Arguments (after `--` on wrk's command line): LO HI. Each wrk thread
-- seeds its own generator, so threads do not repeat each other's sequence.
--
-- There is deliberately no response() callback: defining one makes wrk parse every
-- response's headers into Lua tables, which costs CPU that wrk shares with the system
-- under test. Errors are counted by wrk itself ("Non-2xx or 3xx responses", "Socket errors").

local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("thread_id", counter)
end

function init(args)
    lo = tonumber(args[1]) or 1
    hi = tonumber(args[2]) or lo
    if hi < lo then hi = lo end
    local tid = thread_id or 0
    math.randomseed(os.time() * 1000 + tid * 7919)
    -- LuaJIT's first values after seeding are poorly mixed; discard a few.
    for _ = 1, 8 do math.random() end
end

function request()
    return wrk.format("GET", "/api/users/" .. math.random(lo, hi))
end
