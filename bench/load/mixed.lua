-- mixed.lua - wrk script for bench/load/mixed.sh: a mixed clmrd workload.
--   55% POST /v1/search (embedding bodies prepared by mixed.sh), 30% cached POST /v1/tag,
--   12% GET /v1/tracks/{id}/similar?k=10, 3% real uploads (POST /v1/tracks of a fresh
--   random-noise WAV: distinct bytes, so a real decode, inference and ingest every time).
-- Args (after --): DIR DELAY_MS. DELAY_MS > 0 paces each connection (a pause after every answer:
-- rate ~ connections / (latency + delay)), the wrk2-like pacing plain wrk offers.
-- done() prints "statuses" (code:count), per-class counts and latency percentiles.
local dir, pause = nil, 0
local searches, ids, tagbody = {}, {}, nil
counts = {}  -- global: done() reads it from every thread with thread:get
local threads = {}
local id_counter = 0

function setup(thread)
  id_counter = id_counter + 1
  thread:set("tid", id_counter)
  table.insert(threads, thread)
end

local function slurp(p)
  local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s
end

function init(args)
  dir, pause = args[1], tonumber(args[2] or "0")
  math.randomseed(os.time() * 1000 + (tid or 0))
  for line in io.lines(dir .. "/ids.txt") do table.insert(ids, line) end
  local i = 1
  while true do
    local f = io.open(dir .. "/search" .. i .. ".json", "rb")
    if not f then break end
    table.insert(searches, f:read("*a")); f:close(); i = i + 1
  end
  tagbody = slurp(dir .. "/cached.wav")
end

local function noise_wav(n)
  local le16 = function(v) return string.char(v % 256, math.floor(v / 256) % 256) end
  local le32 = function(v) return le16(v % 65536) .. le16(math.floor(v / 65536)) end
  local b = {}
  for i = 1, n do b[i] = string.char(math.random(0, 255), math.random(0, 255)) end
  local data = table.concat(b)
  return "RIFF" .. le32(36 + #data) .. "WAVEfmt " .. le32(16) .. le16(1) .. le16(1) .. le32(22050) ..
         le32(44100) .. le16(2) .. le16(16) .. "data" .. le32(#data) .. data
end

local json_h = { ["Content-Type"] = "application/json" }
local wav_h = { ["Content-Type"] = "audio/wav" }

function request()
  local r = math.random(100)
  if r <= 55 then
    return wrk.format("POST", "/v1/search", json_h, searches[math.random(#searches)])
  elseif r <= 85 then
    return wrk.format("POST", "/v1/tag", wav_h, tagbody)
  elseif r <= 97 then
    return wrk.format("GET", "/v1/tracks/" .. ids[math.random(#ids)] .. "/similar?k=10")
  else
    return wrk.format("POST", "/v1/tracks", wav_h, noise_wav(11025))  -- 0.5 s
  end
end

function delay()
  return pause
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  local parts, keys = {}, {}
  for k in pairs(total) do table.insert(keys, k) end
  table.sort(keys)
  for _, k in ipairs(keys) do table.insert(parts, k .. ":" .. total[k]) end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT requests %d in %.1f s = %.1f req/s; statuses %s; socket errors connect %d read %d write %d timeout %d\n",
    summary.requests, secs, summary.requests / secs, table.concat(parts, ","),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  io.write(string.format("RESULT latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f\n",
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
