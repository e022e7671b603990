-- The Lua half of the kernel's debugger: loaded once per Lua state, next to driver.lua, by
-- kernelsdk_lua._debugger (LuaDebugger). It costs nothing until a frontend sets a breakpoint
-- or steps: no hook is set on any coroutine before that.
--
-- Breakpoints and stepping run on Lua's own debug hook (debug.sethook), on the coroutine of
-- the running cell and the coroutines it resumes: "call" and "return" events switch "line"
-- events on only inside functions whose source has breakpoints (or everywhere while
-- stepping). The kernel's one C hook (_state.py: interrupts, the memory check, subshells)
-- keeps this hook and puts it back after it fires; an interrupt replaces it, which ends the
-- cell anyway.
--
-- Stopped, the cell's worker thread stays inside this hook: `host("dbg_stopped")` tells
-- Python, then `host("dbg_wait")` blocks until Python has a command (a Lua table literal:
-- frames, scopes, variables, evaluate, configure, resume) and each answer goes back as JSON
-- through `host("dbg_result")`. Python never touches the state from another thread.
local K, host = ...
local cwd = "."

local D = {}
local json, fetch, repr = K.json, K.fetch, K.repr
local type, tostring, pairs, next, pcall, error = type, tostring, pairs, next, pcall, error
local setmetatable, getmetatable, rawget, select = setmetatable, getmetatable, rawget, select
local sformat, concat, sort = string.format, table.concat, table.sort
local getinfo, getlocal, setlocal = debug.getinfo, debug.getlocal, debug.setlocal
local getupvalue, setupvalue, sethook = debug.getupvalue, debug.setupvalue, debug.sethook
local running = coroutine.running
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local DRIVER, SELF = "=kernelsdk_lua", "=kernelsdk_lua_debugger"
local load = load
if setfenv then -- Lua 5.1: load only takes functions
  load = function(s, name, _, env)
    local f, err = loadstring(s, name)
    if f and env then setfenv(f, env) end
    return f, err
  end
end

-- ---------------------------------------------------------------------------------------
-- Configuration, from Python (D.configure)

local active = false       -- the frontend's debugger is on
local paths = {}           -- Lua source of a cell ("=In[3]") -> its file (dumpCell's name)
local breakpoints = {}     -- file -> { [line] = { condition = ..., log = ... } }
local break_on_error = false
local by_source = {}       -- Lua source -> the breakpoints of its file, or false (a cache)

local function file_of(source)
  local cell = paths[source]
  if cell then return cell end
  if source:sub(1, 1) ~= "@" then return nil end
  local file = source:sub(2)
  if file:sub(1, 1) ~= "/" then file = cwd .. "/" .. file:gsub("^%./", "") end
  return file
end

local function lines_of(source)
  local found = by_source[source]
  if found == nil then
    local file = file_of(source)
    found = file and breakpoints[file] or false
    by_source[source] = found
  end
  return found
end

local function any_breakpoint() return next(breakpoints) ~= nil end

-- ---------------------------------------------------------------------------------------
-- The hook

local mode = nil           -- nil (run to a breakpoint), "stepIn", "next", "stepOut", "pause"
local step_depth = 0       -- the stack depth the step started at
local stop                 -- defined below
local hook

local function is_user(info)
  local source, what = info.source, info.what
  -- 5.1 lists tail calls as frames of their own ("tail", source "=(tail call)")
  return what ~= "C" and what ~= "tail" and source ~= DRIVER and source ~= SELF
end

-- The user's frames from `level` (as seen from the caller) up to the cell's entry (the
-- driver's frame that runs it): what `stop` lists.
local function depth_from(level)
  local n = 0
  level = level + 1
  while true do
    local info = getinfo(level, "S")
    if not info or (n > 0 and info.source == DRIVER) then return n end
    if is_user(info) then n = n + 1 end
    level = level + 1
  end
end

-- Per coroutine (weak keys; MAIN stands for 5.1's main thread, where running() is nil):
-- whether its "line" events are on, and the breakpoints of the function it runs now (false:
-- none; nil: not known yet). Kept so that a call costs no debug.sethook when nothing
-- changes, and a line no debug.getinfo unless it has a breakpoint or a step is on.
local MAIN = {}
local masks = setmetatable({}, { __mode = "k" })
local currents = setmetatable({}, { __mode = "k" })

local function set_mask(co, lines)
  if co then sethook(co, hook, lines and "crl" or "cr") else sethook(hook, lines and "crl" or "cr") end
  masks[co or running() or MAIN] = lines
end

-- The breakpoints of each function seen (weak keys; false: none), so that a call asks
-- debug.getinfo only for the function ("f"), not for its source ("S" formats a name).
local func_lines = setmetatable({}, { __mode = "k" })

-- A "call" or "return" event: the function at `level` (seen from the hook) runs from now on.
local function entered(level)
  local key = running() or MAIN
  local info = getinfo(level + 1, "f")
  local lines = false
  if info and info.func then -- 5.1's tail call frames have none
    local func = info.func
    lines = func_lines[func]
    if lines == nil then
      local s = getinfo(func, "S")
      lines = s.what ~= "C" and lines_of(s.source) or false
      func_lines[func] = lines
    end
  end
  currents[key] = lines
  local want = mode ~= nil or lines ~= false
  if masks[key] ~= want then set_mask(nil, want) end
end

local function needs_hook() return active and (mode ~= nil or any_breakpoint()) end

-- Evaluate `code` with the locals and upvalues of the function at `level` (absolute, for
-- the caller) visible and assignable, and globals behind them. Returns pack(ok, ...).
local function frame_env(level)
  local info = getinfo(level + 1, "f")
  local func = info and info.func
  local values, where = {}, {}
  local i = 1
  while true do
    local name, value = getlocal(level + 1, i)
    if not name then break end
    if name:sub(1, 1) ~= "(" then values[name], where[name] = value, { "local", i } end
    i = i + 1
  end
  if func then
    i = 1
    while true do
      local name, value = getupvalue(func, i)
      if not name then break end
      if where[name] == nil and name ~= "_ENV" then
        values[name], where[name] = value, { "upvalue", i }
      end
      i = i + 1
    end
  end
  local env = setmetatable({}, {
    __index = function(_, k)
      if where[k] then return values[k] end
      return _G[k]
    end,
    __newindex = function(_, k, v)
      local w = where[k]
      if w == nil then _G[k] = v; return end
      values[k] = v
      if w[1] == "upvalue" then setupvalue(func, w[2], v) else D.pending_locals[#D.pending_locals + 1] = { w[2], v } end
    end,
  })
  return env
end
D.pending_locals = {}

local function compile(code, env)
  local f = load("return " .. code, "=evaluate", "t", env)
  if not f then
    local err
    f, err = load(code, "=evaluate", "t", env)
    if not f then return nil, err end
  end
  return f
end

local function log_message(template, level)
  local env = frame_env(level + 1)
  local text = template:gsub("{(.-)}", function(expr)
    local f = compile(expr, env)
    if not f then return "{" .. expr .. "}" end
    local ok, v = pcall(f)
    return ok and (type(v) == "string" and v or repr(v)) or "{" .. expr .. "}"
  end)
  host("out", text .. "\n")
end

local function breakpoint_says_stop(bp, level)
  if bp.condition then
    local f = compile(bp.condition, frame_env(level + 1))
    if not f then return false end
    local ok, v = pcall(f)
    if not ok or not v then return false end
  end
  if bp.log then
    log_message(bp.log, level + 1)
    return false
  end
  return true
end

hook = function(event, line)
  if event == "line" then
    local key = running() or MAIN
    local lines = currents[key]
    if lines == nil then -- armed in the middle of a function
      lines = lines_of(getinfo(2, "S").source)
      currents[key] = lines
    end
    local bp = lines and lines[line]
    if bp and breakpoint_says_stop(bp, 2) then return stop("breakpoint") end
    if mode == nil then return end
    local info = getinfo(2, "S")
    if not is_user(info) then return end
    if mode == "stepIn" or mode == "pause" then return stop(mode == "pause" and "pause" or "step") end
    local depth = depth_from(2)
    if (mode == "next" and depth <= step_depth) or (mode == "stepOut" and depth < step_depth) then
      return stop("step")
    end
  elseif event == "return" then
    entered(3)
  elseif event ~= "count" then -- "call", "tail call" (5.2+), "tail return" (5.1)
    entered(2)
  end
end

-- Set or clear the hook of coroutine `co` as the configuration asks ("line" events on at
-- first: the next "call" or "return" event narrows them). A user's own hook is left alone.
local function arm(co)
  if not co then return end
  if needs_hook() then
    set_mask(co, true)
  elseif debug.gethook(co) == hook then
    sethook(co)
  end
end

function D.configure(config)
  if config.active ~= nil then active = config.active end
  for source, file in pairs(config.paths or {}) do paths[source] = file end
  if config.breakpoints then
    breakpoints = {}
    for file, list in pairs(config.breakpoints) do
      local lines = {}
      for _, bp in ipairs(list) do lines[bp.line] = bp end
      if next(lines) then breakpoints[file] = lines end
    end
  end
  if config.break_on_error ~= nil then break_on_error = config.break_on_error end
  if not active then mode = nil end
  by_source = {}
  currents = setmetatable({}, { __mode = "k" })
  func_lines = setmetatable({}, { __mode = "k" })
  K.on_error = (active and break_on_error) and D.on_error or nil
  return "ok"
end

-- ---------------------------------------------------------------------------------------
-- Stopped: frames, scopes, variables, evaluate

local frames = {}      -- the stopped stack: { name, source, line, offset } innermost first
local refs = {}        -- variablesReference -> what it shows (valid while stopped)
local stop_marker      -- the function `stop` (frames are found relative to its level)

-- The level of `stop`'s frame as seen from the function calling this one.
local function stop_level()
  local level = 2
  while true do
    local info = getinfo(level, "f")
    if not info then error("not stopped", 0) end
    if info.func == stop_marker then return level - 1 end
    level = level + 1
  end
end

-- The level of stopped frame `id`, as seen from the caller of this function.
local function frame_level(id)
  local frame = frames[id]
  if not frame then error("no frame " .. tostring(id), 0) end
  return stop_level() - 1 + frame.offset
end

local function new_ref(what)
  refs[#refs + 1] = what
  return #refs
end

-- The type a Variable says: JupyterLab's tree view shows the value only for the type names
-- it knows, Python's (int, float, bool, str), and the type instead for any other.
local JUPYTER_TYPES = { boolean = "bool", string = "str" }
local function type_of(v)
  local tv = type(v)
  if tv == "number" then
    if math.type then return math.type(v) == "integer" and "int" or "float" end
    return v % 1 == 0 and "int" or "float"
  end
  return JUPYTER_TYPES[tv] or tv
end

local function short(v)
  local tv = type(v)
  if tv == "table" then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") then
      local ok, s = pcall(tostring, v)
      if ok and type(s) == "string" then return s end
    end
    local parts, n = {}, 0
    for k, x in next, v do
      n = n + 1
      if n > 5 then parts[#parts + 1] = "…"; break end
      local vs = type(x) == "table" and "{…}" or repr(x)
      if #vs > 40 then vs = vs:sub(1, 37) .. "…" end
      if type(k) == "number" and k == n then parts[#parts + 1] = vs
      else parts[#parts + 1] = (type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. repr(k) .. "]") .. " = " .. vs end
    end
    return "{" .. concat(parts, ", ") .. "}"
  end
  local s = repr(v)
  if #s > 500 then s = s:sub(1, 497) .. "…" end
  return s
end

local function variable(name, v, evaluate_name)
  local ref = 0
  if type(v) == "table" and next(v) ~= nil then ref = new_ref({ kind = "table", value = v }) end
  local entry = { name = name, value = short(v), type = type_of(v), variablesReference = ref }
  if evaluate_name then entry.evaluateName = evaluate_name end
  return entry
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta == "number" end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function key_name(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. repr(k) .. "]"
end

-- Globals the kernel or Lua defines (the Variables panel shows the user's).
local builtin = {}
for k in pairs(K.builtin_globals or _G) do builtin[k] = true end

-- `level`: the frame's, as seen from the caller of this function.
local function children(what, level)
  if level then level = level + 1 end
  local out = {}
  if what.kind == "locals" then
    local i = 1
    while true do
      local name, value = getlocal(level, i)
      if not name then break end
      if name:sub(1, 1) ~= "(" then out[#out + 1] = variable(name, value, name) end
      i = i + 1
    end
  elseif what.kind == "upvalues" then
    local info = getinfo(level, "f")
    local i = 1
    while info and info.func do
      local name, value = getupvalue(info.func, i)
      if not name then break end
      if name ~= "_ENV" then out[#out + 1] = variable(name, value, name) end
      i = i + 1
    end
  elseif what.kind == "globals" then
    local keys = {}
    for k in pairs(_G) do
      if type(k) == "string" and not builtin[k] and k ~= "_" then keys[#keys + 1] = k end
    end
    sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = variable(k, rawget(_G, k), k) end
  elseif what.kind == "table" then
    local keys = {}
    for k in next, what.value do keys[#keys + 1] = k end
    sort(keys, key_order)
    for _, k in ipairs(keys) do out[#out + 1] = variable(key_name(k), rawget(what.value, k)) end
    local mt = getmetatable(what.value)
    if type(mt) == "table" then out[#out + 1] = variable("(metatable)", mt) end
  end
  return out
end

local commands = {}

function commands.frames()
  local out = {}
  for id, frame in ipairs(frames) do
    out[#out + 1] = {
      id = id, name = frame.name, line = frame.line, column = 1,
      source = frame.file and { path = frame.file, name = frame.file:match("[^/]*$") } or nil,
    }
  end
  return out
end

function commands.scopes(cmd)
  local level = frame_level(cmd.frame)
  local scopes = {
    { name = "Locals", presentationHint = "locals", expensive = false,
      variablesReference = new_ref({ kind = "locals", frame = cmd.frame }) },
  }
  local info = getinfo(level, "fu")
  if info and (info.nups or 0) > 0 then
    scopes[#scopes + 1] = { name = "Upvalues", expensive = false,
      variablesReference = new_ref({ kind = "upvalues", frame = cmd.frame }) }
  end
  scopes[#scopes + 1] = { name = "Globals", expensive = false,
    variablesReference = new_ref({ kind = "globals" }) }
  return scopes
end

local function page(list, start, count)
  if not start and not count then return list end
  local out = {}
  start = start or 0
  for i = start + 1, count and math.min(#list, start + count) or #list do out[#out + 1] = list[i] end
  return out
end

function commands.variables(cmd)
  local what = refs[cmd.ref]
  if not what then error("no variables reference " .. tostring(cmd.ref), 0) end
  local level = what.frame and frame_level(what.frame) or nil
  return page(children(what, level), cmd.start, cmd.count)
end

local function results_of(r)
  if r.n == 0 then return { result = "", variablesReference = 0 } end
  local parts = {}
  for i = 1, r.n do parts[i] = short(r[i]) end
  local first = variable("", r[1])
  return { result = concat(parts, ", "), type = first.type, variablesReference = first.variablesReference }
end

function commands.evaluate(cmd)
  local env
  local level
  if cmd.frame then
    level = frame_level(cmd.frame)
    env = frame_env(level)
  else
    env = _G
  end
  local f, err = compile(cmd.expression, env)
  if not f then error(err, 0) end
  D.pending_locals = {}
  local r = pack(pcall(f))
  if not r[1] then error(tostring(r[2]), 0) end
  if level then
    level = frame_level(cmd.frame) -- the same frame, seen from here
    for _, assignment in ipairs(D.pending_locals) do setlocal(level, assignment[1], assignment[2]) end
  end
  return results_of(pack(unpack(r, 2, r.n)))
end

function commands.configure(cmd) D.configure(cmd.config); return "ok" end
function commands.globals() return children({ kind = "globals" }) end

-- The user's globals, when nothing is stopped (JupyterLab's inspectVariables).
function D.globals()
  refs = {}
  return json(children({ kind = "globals" }))
end

function D.variables(ref, start, count)
  local what = refs[ref]
  if not what or what.frame then return json({ error = "no variables reference " .. tostring(ref) }) end
  return json(page(children(what), start, count))
end

function D.evaluate_global(expression)
  local f, err = compile(expression, _G)
  if not f then return json({ error = err }) end
  local r = pack(pcall(f))
  if not r[1] then return json({ error = tostring(r[2]) }) end
  return json(results_of(pack(unpack(r, 2, r.n))))
end

-- The user's frames, innermost first, from the caller of `stop` up to the cell's entry;
-- each frame's offset is its level relative to `stop`'s.
local function collect_frames()
  frames = {}
  local found_user = false
  local level = 3 -- 1 this function, 2 stop
  while true do
    local info = getinfo(level, "nSl")
    if not info then break end
    if found_user and info.source == DRIVER then break end
    if is_user(info) then
      found_user = true
      local name = info.name
      if not name then
        name = info.what == "main" and ((paths[info.source] and "cell " .. info.source:gsub("^[=@]", "")) or "main chunk")
          or sformat("function <%s:%d>", info.short_src, info.linedefined)
      end
      frames[#frames + 1] = {
        name = name, line = info.currentline, file = file_of(info.source), offset = level - 2,
      }
    end
    level = level + 1
  end
end

-- Stop the running coroutine here until Python says to resume.
stop = function(reason, text)
  -- A cell of another shell may run (and stop) while this one is stopped: its frames and
  -- references are its own, this stop's come back when it is done.
  local outer_frames, outer_refs = frames, refs
  collect_frames()
  refs = {}
  mode = nil
  host("dbg_stopped", json({ reason = reason, text = text }))
  while true do
    local n = host("dbg_wait", "", 0)
    if n < 0 then error(K.INTERRUPTED, 0) end
    local cmd = load("return " .. fetch(n))()
    if cmd.config then D.configure(cmd.config) end
    if cmd.op == "resume" then
      mode = cmd.kind ~= "continue" and cmd.kind or nil
      step_depth = #frames
      break
    end
    local ok, result = pcall(commands[cmd.op], cmd)
    host("dbg_result", json(ok and { result = result } or { error = tostring(result) }))
  end
  frames, refs = outer_frames, outer_refs
  local co = running()
  if co then arm(co) end
end
stop_marker = stop

-- Pause the running coroutine at its next line (Python armed the kernel's hook to get here).
function D.pause()
  if not active then return end
  mode = "pause"
  local co = running()
  if co then set_mask(co, true) else set_mask(nil, true) end
end

-- From the kernel's C hook (Python armed it: LuaState.arm_debugger): take the new
-- configuration, and pause if asked.
function D.sync()
  local n = host("dbg_sync", "", 0)
  local chunk = n > 0 and load(fetch(n)) or nil
  local t = chunk and chunk() or {}
  if t.config then D.configure(t.config) end
  local co = running()
  if t.pause then D.pause() elseif co then arm(co) end
end
debug.getregistry()[0x4B534447] = D.sync

function D.set_cwd(dir) cwd = dir end

-- Every cell and comm handler starts in a coroutine the driver prepares: arm it (and the
-- coroutines it creates, from inside, at their first resume: Lua hooks are per coroutine).
local prepare, comm_event = K.prepare, K.comm_event
local pause_next = false
function D.pause_next() pause_next = true end
function K.prepare(...)
  -- a step that outlived its cell does not stop the next one; a pause sent before it did
  mode = pause_next and "pause" or nil
  pause_next = false
  local status, co = prepare(...)
  if active and status == "ready" then arm(co) end
  return status, co
end
function K.comm_event(...)
  local status, co = comm_event(...)
  if active and status == "ready" then arm(co) end
  return status, co
end
local co_create, co_wrap = coroutine.create, coroutine.wrap
local function armed(f)
  if type(f) ~= "function" then return f end
  return function(...)
    if active then arm(running()) end
    return f(...)
  end
end
coroutine.create = function(f) return co_create(armed(f)) end
coroutine.wrap = function(f) return co_wrap(armed(f)) end

-- Uncaught errors, from the driver's message handler while the stack is still there.
function D.on_error(err)
  if err == K.INTERRUPTED then return end
  local message = type(err) == "string" and err or tostring(err)
  local ok, problem = pcall(stop, "exception", message) -- an interrupt cannot raise here
  mode = nil -- the error unwinds whatever was stepped
  if not ok and problem ~= K.INTERRUPTED then error(problem, 0) end
end

K.debugger = D
