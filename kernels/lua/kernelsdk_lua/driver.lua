-- The Lua half of the kernel: loaded once per Lua state by kernelsdk_lua._state (LuaState).
--
-- Why so much of the kernel is Lua: with cffi in ABI mode there is no C of our own, and any
-- Lua API call that can raise (allocation, metamethods, luaL_error) must not run in a Python
-- frame, or Lua's longjmp would tear through the interpreter. So everything that can raise
-- runs here, inside lua_pcall or the cell's coroutine, and Python only ever sees strings.
-- Python talks to this driver by loading tiny chunks `local K = ...; return K.f("...")`;
-- this driver talks to Python through one C function, `host(op, text, n)`, which consumes
-- strings and returns at most an integer.
local host, version_tag = ...

local K = {}
local unpack = table.unpack or unpack
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local load = load
if setfenv then -- Lua 5.1 / LuaJIT: load only takes functions; loadstring takes strings
  load = function(s, name) return loadstring(s, name) end
end
local G = _G
local type, tostring, pairs, next, select, rawget = type, tostring, pairs, next, select, rawget
local getmetatable, pcall, xpcall, error = getmetatable, pcall, xpcall, error
local sformat, srep, concat, sort = string.format, string.rep, table.concat, table.sort
local debug_traceback, debug_getinfo = debug.traceback, debug.getinfo
local debug_sethook, debug_getlocal = debug.sethook, debug.getlocal

-- ---------------------------------------------------------------------------------------
-- JSON (results to Python, display.json)

-- The escapes JSON strings and Lua string literals spell alike (json_string, quote).
local short_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return short_escapes[c] or sformat("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for k in next, t do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  for i = 1, n do if rawget(t, i) == nil then return false end end
  return true, n
end

local json
local function json_value(v, seen)
  local tv = type(v)
  if v == nil then return "null"
  elseif tv == "boolean" then return tostring(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type and math.type(v) == "integer" then return sformat("%d", v) end
    if v % 1 == 0 and v > -2^53 and v < 2^53 then return sformat("%.0f", v) end
    return sformat("%.17g", v)
  elseif tv == "string" then return json_string(v)
  elseif tv == "table" then
    if seen[v] then error("cannot encode a table that contains itself as JSON", 0) end
    seen[v] = true
    local arr, n = is_array(v)
    local parts = {}
    if arr and n > 0 then
      for i = 1, n do parts[i] = json_value(v[i], seen) end
      seen[v] = nil
      return "[" .. concat(parts, ",") .. "]"
    end
    for k, x in next, v do
      parts[#parts + 1] = json_string(tostring(k)) .. ":" .. json_value(x, seen)
    end
    seen[v] = nil
    return "{" .. concat(parts, ",") .. "}"
  else
    return json_string(tostring(v))
  end
end
json = function(v) return json_value(v, {}) end
K.json = json

-- ---------------------------------------------------------------------------------------
-- Host calls

local function host_text(op, text) return host(op, text) end

-- Strings from Python arrive as integers (host never pushes anything that could allocate):
-- `host("fetch", "", i)` returns bytes i .. i+5 packed little-endian in one integer.
local function fetch(n)
  local parts, i = {}, 0
  while i < n do
    local v = host("fetch", "", i)
    for k = 0, 5 do
      if i + k < n then
        local b = v % 256
        parts[#parts + 1] = string.char(b)
        v = (v - b) / 256
      end
    end
    i = i + 6
  end
  return concat(parts)
end
K.fetch = fetch

-- ---------------------------------------------------------------------------------------
-- Readable values

local keywords = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}
local is_keyword = {}
for _, k in ipairs(keywords) do is_keyword[k] = true end

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and not is_keyword[s]
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return short_escapes[c] or sformat("\\%03d", c:byte())  -- padded: "\1" then "2" is not "\12"
  end) .. '"'
end

-- While inspecting (not interruptible: it runs outside a coroutine) no user code may run, so
-- __tostring metamethods are not called then.
local no_user_code = false

local function safe_tostring(v)
  if no_user_code then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
      return "<" .. type(v) .. " with __tostring>"
    end
  end
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<" .. type(v) .. ">"
end

local function number_repr(v)
  if math.type and math.type(v) == "integer" then return sformat("%d", v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  local s = sformat("%.14g", v)
  if math.type and not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return safe_tostring(a) < safe_tostring(b)
end

local MAX_ITEMS, MAX_DEPTH, WIDTH = 100, 4, 80
local repr

local function table_repr(t, depth, seen, indent)
  local mt = getmetatable(t)
  if type(mt) == "table" and rawget(mt, "__tostring") then return safe_tostring(t) end
  if seen[t] then return "<cycle: " .. safe_tostring(t) .. ">" end
  if depth > MAX_DEPTH then return "{...}" end
  seen[t] = true
  local items, n = {}, 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local count = 0
  for i = 1, n do
    count = count + 1
    if count > MAX_ITEMS then break end
    items[#items + 1] = repr(rawget(t, i), depth + 1, seen, indent .. "  ")
  end
  local keys = {}
  for k in next, t do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  sort(keys, key_order)
  for _, k in ipairs(keys) do
    count = count + 1
    if count > MAX_ITEMS then break end
    local ks = is_identifier(k) and k or ("[" .. repr(k, MAX_DEPTH, seen, indent) .. "]")
    items[#items + 1] = ks .. " = " .. repr(rawget(t, k), depth + 1, seen, indent .. "  ")
  end
  if count > MAX_ITEMS then items[#items + 1] = "..." end
  seen[t] = nil
  if #items == 0 then return "{}" end
  local one = "{" .. concat(items, ", ") .. "}"
  if #one + #indent <= WIDTH and not one:find("\n") then return one end
  local inner = indent .. "  "
  return "{\n" .. inner .. concat(items, ",\n" .. inner) .. ",\n" .. indent .. "}"
end

repr = function(v, depth, seen, indent)
  depth, seen, indent = depth or 1, seen or {}, indent or ""
  local tv = type(v)
  if tv == "string" then return quote(v)
  elseif tv == "number" then return number_repr(v)
  elseif tv == "table" then return table_repr(v, depth, seen, indent)
  else return safe_tostring(v) end
end
K.repr = repr

-- ---------------------------------------------------------------------------------------
-- Output: print, io.write, io.stdout, io.stderr, io.read

local function write_values(stream, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local tv = type(v)
    if tv == "number" then
      parts[i] = (math.type and math.type(v) == "integer") and sformat("%d", v) or sformat("%.14g", v)
    elseif tv == "string" then
      parts[i] = v
    else
      error(sformat("bad argument #%d to 'write' (string expected, got %s)", i, tv), 3)
    end
  end
  host_text(stream, concat(parts))
end

G.print = function(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  host_text("out", concat(parts, "\t") .. "\n")
end

local function read_line(prompt)
  local n = host("input", prompt or "")
  if n == -1 then return nil end
  if n == -2 then
    error("io.read: this frontend does not accept input (allow_stdin is false)", 0)
  end
  if n == -3 then error(K.INTERRUPTED, 0) end
  return fetch(n)
end

local function read(fmt)
  fmt = fmt or "l"
  if type(fmt) == "string" then fmt = fmt:gsub("^%*", ""):sub(1, 1) end
  local line = read_line("")
  if line == nil then return nil end
  if fmt == "n" then return tonumber(line)
  elseif fmt == "L" then return line .. "\n"
  elseif type(fmt) == "number" then return line:sub(1, fmt)
  else return line end
end

local function read_many(...)
  local n = select("#", ...)
  if n == 0 then return read("l") end
  local out = {}
  for i = 1, n do
    out[i] = read((select(i, ...)))
    if out[i] == nil then return unpack(out, 1, i) end
  end
  return unpack(out, 1, n)
end

local function make_file(stream, name)
  local file = {}
  local methods = {
    write = function(self, ...) write_values(stream, ...) return self end,
    flush = function(self) return self end,
    setvbuf = function() return true end,
    close = function() return nil, "cannot close standard file" end,
    seek = function() return nil, "cannot seek on " .. name end,
    read = function(_, ...) return read_many(...) end,
    lines = function(_, fmt) return function() return read(fmt) end end,
  }
  return setmetatable(file, {
    __index = methods,
    __name = "FILE*",
    __tostring = function() return "file (" .. name .. ")" end,
  })
end

local stdout, stderr, stdin = make_file("out", "stdout"), make_file("err", "stderr"), make_file("out", "stdin")
io.stdout, io.stderr, io.stdin = stdout, stderr, stdin
io.write = function(...) write_values("out", ...) return stdout end
io.read = read_many
io.lines = function(filename, ...)
  if filename ~= nil then
    local f = assert(io.open(filename))
    return f:lines(...)
  end
  local fmt = ...
  return function() return read(fmt) end
end
io.output = function(f) if f ~= nil then error("io.output cannot be redirected in the kernel", 2) end return stdout end
io.input = function(f) if f ~= nil then error("io.input cannot be redirected in the kernel", 2) end return stdin end
os.exit = function() error("os.exit is disabled in the kernel (restart the kernel instead)", 2) end

-- ---------------------------------------------------------------------------------------
-- io.popen through the kernel. lupa's Lua is built without popen ("'popen' not supported"),
-- and a native popen would leave the command's stderr on the kernel's terminal. Python starts
-- the command (kernelsdk_lua/_popen.py) and Lua opens its end of the pipe as /dev/fd/N: a
-- real Lua file, with every read format and `lines`. Closing it waits for the command and
-- returns what Lua 5.2+ returns: true or nil, then "exit" and the exit code or "signal" and
-- the signal number.

local io_open, io_close = io.open, io.close
local file_meta = debug.getregistry()["FILE*"]
local file_methods = type(file_meta) == "table"
  and (type(file_meta.__index) == "table" and file_meta.__index or file_meta) or nil
local file_close = file_methods and file_methods.close
local popen_ids = setmetatable({}, { __mode = "k" }) -- popen file -> the command's id in Python

local function close_popen(f, id)
  popen_ids[f] = nil
  file_close(f)
  local status = host("pclose", "", id)
  if status >= 256 then return nil, "signal", status - 256 end
  if status == 0 then return true, "exit", 0 end
  return nil, "exit", status
end

function io.popen(prog, mode)
  if type(prog) == "number" then prog = tostring(prog) end
  if type(prog) ~= "string" then
    error(sformat("bad argument #1 to 'popen' (string expected, got %s)", type(prog)), 2)
  end
  if mode == nil then mode = "r" end
  if mode ~= "r" and mode ~= "w" then error("bad argument #2 to 'popen' (invalid mode)", 2) end
  local id = host("popen", prog, mode == "w" and 1 or 0)
  if id == 0 then return nil, "io.popen: commands start only from cells and comm handlers" end
  if id < 0 then return nil, fetch(-id) end
  local f, err = io_open("/dev/fd/" .. host("popen_fd", "", id), mode)
  host("popen_release", "", id) -- Python's copy of the pipe's end: the file has its own now
  if not f then
    host("pclose", "", id)
    return nil, err
  end
  popen_ids[f] = id
  return f
end

function io.close(f)
  if f == nil then return stdout:close() end -- the kernel's stdout, which stays open
  local id = popen_ids[f]
  if id then return close_popen(f, id) end
  return io_close(f)
end

if file_methods then
  file_methods.close = function(f, ...)
    local id = popen_ids[f]
    if id then return close_popen(f, id) end
    return file_close(f, ...)
  end
  local file_gc, file_tbc = rawget(file_meta, "__gc"), rawget(file_meta, "__close")
  if file_gc then
    file_meta.__gc = function(f)
      local id = popen_ids[f]
      if id then
        popen_ids[f] = nil
        host("pforget", "", id) -- not closed: Python reaps the command when it ends
      end
      return file_gc(f)
    end
  end
  if file_tbc then -- Lua 5.4+: `local f <close> = io.popen(...)`
    file_meta.__close = function(f, e)
      local id = popen_ids[f]
      if id then
        close_popen(f, id)
        return
      end
      return file_tbc(f, e)
    end
  end
end

-- os.execute: the command's output is read from the kernel's pipes by another thread; "native"
-- has it taken now, so that it comes before anything the cell prints after the command.
local os_execute = os.execute
os.execute = function(...)
  local results = pack(os_execute(...))
  host("native", "")
  return unpack(results, 1, results.n)
end

-- ---------------------------------------------------------------------------------------
-- The memory guard's Lua half (see MemoryGuard in _memory_guard.py): a sentinel object whose
-- finalizer runs once per garbage collection cycle and tells Python, which then checks the
-- heap's size from a one-shot hook. Nothing runs per allocation or per instruction.

local guard_on, sentinel_armed, gc_stopped = false, false, false
local skip_cycles = 0 -- cycles too small to matter, as Python last computed
local arm_sentinel
local function on_gc_cycle()
  sentinel_armed = false
  if not guard_on then return end
  if skip_cycles > 0 then
    skip_cycles = skip_cycles - 1
  else
    skip_cycles = host("gc", "", 0)
  end
  -- Re-arming allocates; near the limit that may fail (finalizer errors must not escape):
  -- K.finish re-arms after the cell then.
  sentinel_armed = pcall(arm_sentinel)
end
if newproxy then -- Lua 5.1: only userdata have finalizers
  arm_sentinel = function()
    local p = newproxy(true)
    getmetatable(p).__gc = on_gc_cycle
  end
else
  local sentinel_meta = { __gc = on_gc_cycle }
  arm_sentinel = function() setmetatable({}, sentinel_meta) end
end

function K.memory_guard(on)
  guard_on = on
  if on and not sentinel_armed then sentinel_armed = pcall(arm_sentinel) end
  return "ok"
end

-- After a failed cell: a full collection before Python decides; "stopped" keeps Python's
-- counting allocator on while the user keeps the collector stopped (no cycles, no checks).
function K.collect()
  collectgarbage("collect")
  return gc_stopped and "stopped" or "ok"
end

-- One C call can allocate a lot at once, far below the limit, between two GC cycles:
-- string.rep tells Python first (from 1 MiB on), which switches to counting if needed.
local rep, floor, huge_size = string.rep, math.floor, 2 ^ 53
string.rep = function(s, n, sep)
  if guard_on and type(n) == "number" and n > 1 then
    local size = ((type(s) == "string" and #s or 0) + (type(sep) == "string" and #sep or 0)) * n
    if size >= 1048576 then host("reserve", "", floor(size < huge_size and size or huge_size)) end
  end
  local result = rep(s, n, sep) -- not a tail call: errors keep the name 'rep'
  return result
end

local lua_collectgarbage = collectgarbage
G.collectgarbage = function(opt, ...)
  if opt == "stop" then
    gc_stopped = true
    if guard_on then host("reserve", "", huge_size) end -- no more cycles: count instead
  elseif opt == "restart" then
    gc_stopped = false
  end
  return lua_collectgarbage(opt, ...)
end

-- ---------------------------------------------------------------------------------------
-- C modules (LuaRocks, Debian's lua-lpeg, lua-filesystem ...): they leave the lua_* symbols
-- undefined, to be found in the process. A searcher before the standard C one asks Python to
-- export this Lua's symbols first (see export_symbols in _ffi.py), then loads the module
-- and, when that fails, says why and what to do.

local searchers = package.searchers or package.loaders
local lua_version = _VERSION:match("%d+%.%d+")

local function search_path(name, path)
  if package.searchpath then return (package.searchpath(name, path)) end
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    local f = io_open(candidate, "rb")
    if f then
      f:close()
      return candidate
    end
  end
end

local function c_searcher(name)
  local path = search_path(name, package.cpath)
  if not path then return nil end -- the standard searchers say where they looked
  local n = host("cmodule", "", 0)
  local problem = n < 0 and fetch(-n) or nil
  if name:find("-", 1, true) then return nil end -- the standard searcher knows that naming rule
  local loader, err = package.loadlib(path, "luaopen_" .. (name:gsub("%.", "_")))
  if loader then return loader, path end
  local hint = ""
  if tostring(err):find("undefined symbol: lua", 1, true) then
    if problem then
      hint = "\n\t(the kernel could not make its Lua's C API visible to C modules: " .. problem .. ")"
    else
      hint = "\n\t(the module was built for another Lua version than this kernel's Lua "
        .. lua_version .. ": install it for " .. lua_version .. ", e.g. `luarocks --lua-version "
        .. lua_version .. " install <rock>` or Debian's lua-<name> package)"
    end
  end
  error(sformat("error loading module '%s' from file '%s':\n\t%s%s", name, path, tostring(err), hint), 0)
end
if searchers then table.insert(searchers, 3, c_searcher) end

-- Where LuaRocks and Debian install modules, appended to the library's defaults (which for
-- lupa's Lua are only /usr/local/...); Python passes them unless LUA_PATH/LUA_CPATH are set.
function K.extend_paths(path_extra, cpath_extra)
  local function extend(current, extra)
    for template in extra:gmatch("[^;]+") do
      if not (";" .. current .. ";"):find(";" .. template .. ";", 1, true) then
        current = current .. ";" .. template
      end
    end
    return current
  end
  package.path = extend(package.path, path_extra)
  package.cpath = extend(package.cpath, cpath_extra)
  return "ok"
end

-- ---------------------------------------------------------------------------------------
-- Coroutines: Python must know which coroutine runs, to hook it on interrupt (hooks are per
-- coroutine). Resumed coroutines are anchored in `running` so that the pointer Python holds
-- stays valid even if an error skips the "leave" call; cleared by K.finish.

local running, depth = {}, 0
local co_resume, co_create, co_status = coroutine.resume, coroutine.create, coroutine.status
local function traced_resume(co, ...)
  if type(co) ~= "thread" then return co_resume(co, ...) end
  depth = depth + 1
  local my_depth = depth
  running[my_depth] = co
  host("enter", tostring(co), my_depth)
  local r = pack(co_resume(co, ...))
  depth = my_depth - 1
  host("leave", "", my_depth)
  return unpack(r, 1, r.n)
end
coroutine.resume = traced_resume
coroutine.wrap = function(f)
  local co = co_create(f)
  return function(...)
    local r = pack(traced_resume(co, ...))
    if not r[1] then
      local err = r[2]
      if type(err) == "string" and coroutine.close then coroutine.close(co) end
      error(err, 0)
    end
    return unpack(r, 2, r.n)
  end
end
-- Cells nest (a cell of another shell may run inside a running cell's hook, see _state.py):
-- each keeps its own `running` and `depth`, saved here by K.start and put back by K.finish,
-- which also anchors each running cell's coroutine.
local cells = {}
local function push_cell(co)
  cells[#cells + 1] = { co = co, running = running, depth = depth }
  running, depth = {}, 0
end
local function pop_cell()
  local cell = cells[#cells]
  cells[#cells] = nil
  if cell then
    running, depth = cell.running, cell.depth
  else
    running, depth = {}, 0
  end
  local outer = cells[#cells]
  return outer and outer.co or nil
end

-- ---------------------------------------------------------------------------------------
-- display

local display = {}
local function emit(msg) host_text("display", json(msg)) end

local function blob(bytes) return { ["$blob"] = host("blob", bytes) } end

local function show(bundle, opts)
  opts = opts or {}
  if type(bundle) ~= "table" then error("display: a mime bundle must be a table", 3) end
  local data = {}
  for mime, value in pairs(bundle) do
    if type(mime) ~= "string" then error("display: mime types must be strings", 3) end
    data[mime] = value
  end
  if data["text/plain"] == nil then data["text/plain"] = "<display>" end
  local msg = { op = opts.update and "update" or "display", data = data, metadata = opts.metadata or setmetatable({}, { __json_object = true }) }
  if opts.display_id ~= nil then msg.display_id = tostring(opts.display_id) end
  if opts.update and msg.display_id == nil then error("display: update needs a display_id", 3) end
  emit(msg)
  if msg.display_id ~= nil then return msg.display_id end
end

function display.mime(bundle, opts) return show(bundle, opts) end
function display.html(s, opts) return show({ ["text/html"] = tostring(s), ["text/plain"] = "<HTML>" }, opts) end
function display.markdown(s, opts) return show({ ["text/markdown"] = tostring(s), ["text/plain"] = tostring(s) }, opts) end
function display.latex(s, opts) return show({ ["text/latex"] = tostring(s), ["text/plain"] = tostring(s) }, opts) end
function display.svg(s, opts) return show({ ["image/svg+xml"] = tostring(s), ["text/plain"] = "<SVG image>" }, opts) end
function display.text(s, opts) return show({ ["text/plain"] = tostring(s) }, opts) end
local function image(mime, label)
  return function(bytes, opts)
    if type(bytes) ~= "string" then error("display." .. label .. ": expected the image's bytes as a string", 2) end
    opts = opts or {}
    local meta = opts.metadata
    if opts.width or opts.height then
      meta = { [mime] = { width = opts.width, height = opts.height } }
    end
    return show({ [mime] = blob(bytes), ["text/plain"] = "<" .. label:upper() .. " image>" },
      { display_id = opts.display_id, update = opts.update, metadata = meta })
  end
end
display.png = image("image/png", "png")
display.jpeg = image("image/jpeg", "jpeg")
function display.json(t, opts)
  local ok, encoded = pcall(json, t)
  if not ok then error("display.json: " .. encoded, 2) end
  return show({ ["application/json"] = { ["$json"] = encoded }, ["text/plain"] = repr(t) }, opts)
end
function display.update(display_id, bundle) return show(bundle, { display_id = display_id, update = true }) end
function display.clear_output(wait) emit({ op = "clear", wait = wait and true or false }) end
display.clear = display.clear_output
setmetatable(display, {
  __call = function(_, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = repr((select(i, ...))) end
    return show({ ["text/plain"] = concat(parts, ", ") })
  end,
})
package.loaded.display = display
G.display = display

-- ---------------------------------------------------------------------------------------
-- Comms

local comms = {}
local jupyter = {}
local Comm = {}
Comm.__index = Comm
function Comm:send(data)
  if self.closed then error("comm " .. self.id .. " is closed", 2) end
  host_text("comm", json({ op = "msg", comm_id = self.id, data = data or {} }))
end
function Comm:close(data)
  if self.closed then return end
  self.closed = true
  comms[self.id] = nil
  host_text("comm", json({ op = "close", comm_id = self.id, data = data or {} }))
end
function Comm:on_msg(fn) self.msg_handler = fn end
function Comm:on_close(fn) self.close_handler = fn end
Comm.__tostring = function(self) return "comm " .. self.id .. " (" .. self.target .. ")" end

function jupyter.comm_open(target, data)
  if type(target) ~= "string" then error("comm_open: target must be a string", 2) end
  local id = fetch(host("comm_open", json({ target_name = target, data = data or {} })))
  local c = setmetatable({ id = id, target = target }, Comm)
  comms[id] = c
  return c
end
local targets = {}
function jupyter.register_target(name, fn)
  if type(name) ~= "string" then error("register_target: name must be a string", 2) end
  targets[name] = fn
  host_text("register_target", name)
end
package.loaded.jupyter = jupyter
G.jupyter = jupyter

-- A message from the frontend: runs as a request of its own (not inside a cell).
local function decode_data(s)
  -- Python sends comm data as a chunk of Lua table syntax it generated itself.
  local f = load("return " .. s, "=comm data")
  return f and f() or {}
end
function K.comm_event(kind, comm_id, target, data_src)
  return K.start(function() return K.handle_comm_event(kind, comm_id, target, data_src) end, false)
end

function K.handle_comm_event(kind, comm_id, target, data_src)
  local data = decode_data(data_src)
  local c = comms[comm_id]
  if kind == "open" then
    local fn = targets[target]
    if not fn then return "nohandler" end
    c = setmetatable({ id = comm_id, target = target }, Comm)
    comms[comm_id] = c
    fn(c, data)
  elseif kind == "msg" and c and c.msg_handler then
    c.msg_handler(c, data)
  elseif kind == "close" and c then
    comms[comm_id] = nil
    c.closed = true
    if c.close_handler then c.close_handler(c, data) end
  end
  return "ok"
end

-- ---------------------------------------------------------------------------------------
-- mpi: rank, size and collectives (the MPI part is kernelsdk_lua/_mpi.py). Values travel as
-- Lua literals made here and loaded on the other ranks; every rank takes part in a collective
-- even when its value cannot be sent, so that all of them raise instead of some waiting.

local mpi = { rank = 0, size = 1 }

local function number_literal(v)
  if v ~= v then return "(0/0)" end
  if v == math.huge then return "(1/0)" elseif v == -math.huge then return "(-1/0)" end
  if math.type and math.type(v) == "integer" then
    if v == math.mininteger then return "(-9223372036854775807-1)" end
    return sformat("%d", v)
  end
  local s = sformat("%.17g", v)
  if math.type and not s:find("[%.eEn]") then s = s .. ".0" end -- a float stays a float
  return s
end

local function serialize(v, seen)
  local tv = type(v)
  if tv == "nil" or tv == "boolean" then return tostring(v)
  elseif tv == "number" then return number_literal(v)
  elseif tv == "string" then return sformat("%q", v)
  elseif tv == "table" then
    if seen[v] then error("cannot send a table that contains itself", 0) end
    seen[v] = true
    local parts, n = {}, 0
    while rawget(v, n + 1) ~= nil do
      n = n + 1
      parts[n] = serialize(rawget(v, n), seen)
    end
    for k, x in next, v do
      if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
        parts[#parts + 1] = "[" .. serialize(k, seen) .. "]=" .. serialize(x, seen)
      end
    end
    seen[v] = nil
    return "{" .. concat(parts, ",") .. "}"
  end
  error("cannot send a " .. tv .. " value", 0)
end

local function payload(value)
  local ok, s = pcall(serialize, value, {})
  if ok then return "V" .. s end
  return "E" .. tostring(s)
end

local function mpi_call(name, text, n)
  local reply = fetch(host("mpi_" .. name, text, n))
  local kind, body = reply:sub(1, 1), reply:sub(2)
  if kind == "I" then error(K.INTERRUPTED, 0) end
  if kind ~= "V" then error("mpi." .. name .. ": " .. body, 3) end
  local f, err = load("return " .. body, "=mpi")
  if not f then error("mpi." .. name .. ": cannot decode the value: " .. tostring(err), 3) end
  return f()
end

local function check_root(root, name)
  if root == nil then return 0 end
  if type(root) ~= "number" or root % 1 ~= 0 or root < 0 or root >= mpi.size then
    error(sformat("mpi.%s: root must be a rank from 0 to %d, got %s", name, mpi.size - 1,
      repr(root)), 3)
  end
  return root
end

local function number_token(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  return number_literal(v)
end

local reduce_ops = { sum = true, min = true, max = true }
local function reduce_payload(value, op)
  if not reduce_ops[op] then
    return 'Eop must be "sum", "min" or "max", got ' .. repr(op)
  end
  if type(value) == "number" then return "V" .. op .. " n " .. number_token(value) end
  if type(value) ~= "table" then
    return "Eexpected a number or an array of numbers, got a " .. type(value) .. " value"
  end
  local arr, n = is_array(value)
  if not arr then return "Eexpected a number or an array of numbers, got a table with other keys" end
  local tokens = {}
  for i = 1, n do
    local x = rawget(value, i)
    if type(x) ~= "number" then
      return sformat("Eelement %d is a %s value, not a number", i, type(x))
    end
    tokens[i] = number_token(x)
  end
  return "V" .. op .. " t " .. concat(tokens, " ")
end

--- Waits until every rank has called it.
function mpi.barrier() mpi_call("barrier", "", 0) end
--- Returns root's value (default root 0) on every rank: nil, booleans, numbers, strings and
--- tables of them.
function mpi.bcast(value, root)
  root = check_root(root, "bcast")
  local value = mpi_call("bcast", mpi.rank == root and payload(value) or "", root)
  return value -- not a tail call: errors name the caller's line
end
--- Returns, on root (default 0), a table of every rank's value (rank r's at index r + 1);
--- nil on the other ranks.
function mpi.gather(value, root)
  root = check_root(root, "gather")
  local values = mpi_call("gather", payload(value), root)
  return values
end
--- Returns, on every rank, the sum (op "sum", the default), minimum ("min") or maximum ("max")
--- of every rank's number, or elementwise of every rank's array of numbers.
function mpi.allreduce(value, op)
  local result = mpi_call("allreduce", reduce_payload(value, op or "sum"), 0)
  return result
end

function K.mpi_setup(rank, size)
  mpi.rank, mpi.size = rank, size
  return "ok"
end
package.loaded.mpi = mpi
G.mpi = mpi

-- ---------------------------------------------------------------------------------------
-- Cells

K.INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end })
K.sources = {}
local DRIVER = "kernelsdk_lua"

local function clean_traceback(tb)
  -- Keep the user's frames: drop lines from this driver and the C frames that enter it.
  local out = {}
  for line in (tb .. "\n"):gmatch("(.-)\n") do
    if line:find(DRIVER, 1, true) then
      -- driver frame: skip
    elseif line:find("%[C%]: in function 'xpcall'") or line:find("%[C%]: in %?$")
      or line:find("%[C%]: in function <") then
      -- the entry into the cell: skip
    else
      out[#out + 1] = line
    end
  end
  while out[#out] == "stack traceback:" do out[#out] = nil end
  return concat(out, "\n")
end

local function message_of(err)
  if type(err) == "string" then return err end
  if err == nil then return "nil" end
  local mt = getmetatable(err)
  if mt and (type(mt) ~= "table" or rawget(mt, "__tostring")) then return safe_tostring(err) end
  return "(error object is a " .. type(err) .. " value: " .. repr(err) .. ")"
end

local function handler(err)
  if err == K.INTERRUPTED then return err end
  if K.on_error then K.on_error(err) end -- the debugger: stop here, with the stack intact
  local msg = message_of(err)
  local ok, tb = pcall(debug_traceback, msg, 2)
  return { message = msg, traceback = ok and clean_traceback(tb) or msg }
end

-- The cell as a function returning its trailing expression, if it has one: first
-- `return <cell>` (as the lua REPL does), then `<first lines> return <last lines>` where the
-- first lines are a whole chunk on their own. A trailing `;` keeps the value from showing.
local function compile(code, name)
  local trimmed = code:gsub("%s+$", "")
  local silent = trimmed:sub(-1) == ";"
  local body = silent and trimmed:sub(1, -2) or code
  local f = load("return " .. body, name)
  if f then return f, not silent end
  -- split points: line ends from the last one backwards, then semicolons of the last line
  local splits = {}
  for pos in body:gmatch("()\n") do table.insert(splits, 1, pos) end
  local last_line_start = splits[1] or 0
  for pos in body:gmatch("();") do
    if pos > last_line_start then table.insert(splits, 1, pos) end
  end
  for i = 1, math.min(#splits, 20) do
    local head, tail = body:sub(1, splits[i]), body:sub(splits[i] + 1)
    -- a tail starting like `(x)` or `-1` may continue the head's last expression instead
    local ambiguous = tail:match("^%s*[%(%[{%-%+%*/%%^<>=~%.&|\"']") and load(body, "=body")
    if not tail:match("^%s*$") and not ambiguous and load(head, "=head")
      and load("return " .. tail, "=tail") then
      f = load(head .. " return " .. tail, name)
      if f then return f, not silent end
    end
  end
  local err
  f, err = load(code, name)
  return f, not silent, err -- an explicit `return` in the cell shows its values
end

-- Runs f as a coroutine (so that an interrupt can yield out of it): returns "ready" and the
-- coroutine, which returns the outcome as JSON.
local function start(f, show)
  local co = coroutine.create(function()
    local r = pack(xpcall(f, handler))
    if not r[1] then
      if r[2] == K.INTERRUPTED then return json({ interrupted = true }) end
      local e = r[2]
      if type(e) ~= "table" then -- the handler is not called for memory errors
        local msg = tostring(e)
        local ename = msg == "not enough memory" and "MemoryError" or "LuaError"
        return json({ ename = ename, evalue = msg, traceback = ename .. ": " .. msg })
      end
      return json({ ename = "LuaError", evalue = e.message, traceback = e.traceback })
    end
    if r.n <= 1 or not show then return json({ ok = true }) end
    local parts = {}
    for i = 2, r.n do parts[#parts + 1] = repr(r[i]) end
    G._ = r[2]
    return json({ ok = true, value = concat(parts, ", ") })
  end)
  push_cell(co)
  K.current = co
  return "ready", co
end

K.start = start

function K.prepare(code, name)
  K.sources[name] = code
  local f, has_value, err = compile(code, name)
  if not f then return json({ ename = "SyntaxError", evalue = err }) end
  return start(f, has_value)
end

function K.finish()
  K.current = pop_cell()
  if guard_on and not sentinel_armed then sentinel_armed = pcall(arm_sentinel) end
end

-- Installed from Python's count hook when the cell cannot yield (e.g. inside a C function
-- such as table.sort): a Lua hook that raises, which unwinds through C frames safely.
local function interrupt_hook()
  local info = debug_getinfo(2, "f")
  if info and info.func == handler then return end
  error(K.INTERRUPTED, 0)
end
function K.arm_interrupt()
  local co = coroutine.running() -- nil on 5.1's main thread
  if co then debug_sethook(co, interrupt_hook, "", 1) else debug_sethook(interrupt_hook, "", 1) end
end
debug.getregistry()[0x4B53444B] = K.arm_interrupt

-- ---------------------------------------------------------------------------------------
-- is_complete, completion, inspection

function K.is_complete(code)
  if code:match("^%s*$") then return "complete" end
  if load("return " .. code, "=cell") then return "complete" end
  local f, err = load(code, "=cell")
  if f then return "complete" end
  if err:match("<eof>.?$") then return "incomplete" end
  return "invalid"
end

local function index_chain(t)
  -- t and the tables its metatables' __index lead to (methods of strings, objects ...)
  local chain, seen = {}, {}
  while t ~= nil and not seen[t] do
    seen[t] = true
    if type(t) == "table" then chain[#chain + 1] = t end
    local mt = getmetatable(t)
    if type(mt) ~= "table" then break end
    t = rawget(mt, "__index")
    if type(t) ~= "table" then break end
  end
  return chain
end

local function lookup(path)
  -- resolve "a.b.c" from the globals without running metamethods other than __index tables
  local v = G
  for part in path:gmatch("[^%.:]+") do
    local found = nil
    for _, t in ipairs(index_chain(v)) do
      found = rawget(t, part)
      if found ~= nil then break end
    end
    if found == nil and type(v) == "table" and part:match("^%d+$") then found = rawget(v, tonumber(part)) end
    if found == nil then return nil end
    v = found
  end
  return v
end

local function names_in(v, methods_only)
  local out, seen = {}, {}
  for _, t in ipairs(index_chain(v)) do
    for k, x in next, t do
      if is_identifier(k) and not seen[k] and (not methods_only or type(x) == "function") then
        seen[k] = true
        out[#out + 1] = k
      end
    end
  end
  return out
end

function K.complete(code, cursor)
  local before = code:sub(1, cursor)
  local expr = before:match("[%a_][%w_%.:]*$") or ""
  if expr ~= "" and before:sub(-#expr - 1, -#expr - 1):match("[%w_]") then expr = "" end
  local base, sep, partial = expr:match("^(.*)([%.:])([%w_]*)$")
  local candidates
  if base then
    if base == "" or base:find(":") then return json({ matches = {}, start = cursor, ["end"] = cursor }) end
    local v = lookup(base)
    if v == nil then return json({ matches = {}, start = cursor, ["end"] = cursor }) end
    candidates = names_in(v, sep == ":")
  else
    partial = expr
    candidates = names_in(G, false)
    for _, k in ipairs(keywords) do candidates[#candidates + 1] = k end
  end
  local matches, seen = {}, {}
  for _, name in ipairs(candidates) do
    if name:sub(1, #partial) == partial and not seen[name] then
      seen[name] = true
      matches[#matches + 1] = name
    end
  end
  sort(matches)
  local types = {}
  for i, name in ipairs(matches) do
    local v = base and lookup(base .. "." .. name) or lookup(name)
    types[i] = is_keyword[name] and "keyword" or type(v)
  end
  return json({ matches = matches, types = types, start = cursor - #partial, ["end"] = cursor })
end

local docs = {
  print = "print(...): writes its arguments, converted with tostring, to stdout, separated by tabs",
  type = "type(v): the type of v as a string",
  tostring = "tostring(v): v converted to a string (honours __tostring)",
  tonumber = "tonumber(e [, base]): e converted to a number, or fail",
  pairs = "pairs(t): iterator over all key-value pairs of t",
  ipairs = "ipairs(t): iterator over t[1], t[2], ... up to the first nil",
  pcall = "pcall(f, ...): calls f in protected mode; returns true and f's results, or false and the error",
  error = "error(message [, level]): raises an error",
  require = "require(modname): loads and returns a module",
  setmetatable = "setmetatable(t, mt): sets the metatable of t; returns t",
  ["string.format"] = "string.format(fmt, ...): a formatted string, like C's sprintf",
  ["string.rep"] = "string.rep(s, n [, sep]): n copies of s, separated by sep",
  ["string.sub"] = "string.sub(s, i [, j]): the substring of s from i to j",
  ["string.find"] = "string.find(s, pattern [, init [, plain]]): start and end of the first match",
  ["string.gsub"] = "string.gsub(s, pattern, repl [, n]): s with matches replaced; and the count",
  ["string.upper"] = "string.upper(s): s in upper case",
  ["table.insert"] = "table.insert(t, [pos,] v): inserts v at pos (default: the end)",
  ["table.concat"] = "table.concat(t [, sep [, i [, j]]]): the strings t[i..j] joined by sep",
  ["table.sort"] = "table.sort(t [, comp]): sorts t in place",
  ["math.floor"] = "math.floor(x): the largest integer <= x",
  ["io.read"] = "io.read(...): reads from the frontend (input_request)",
  ["io.write"] = "io.write(...): writes strings and numbers to stdout",
  display = "display(v) / display.html, markdown, latex, svg, png, jpeg, json, mime, update, clear_output: rich output",
}

local function signature(f, name)
  local info = debug_getinfo(f, "Su")
  if not info then return name .. "(...)" end
  local params = {}
  if info.nparams then
    for i = 1, info.nparams do params[i] = debug_getlocal(f, i) or ("arg" .. i) end
    if info.isvararg then params[#params + 1] = "..." end
  else
    params[1] = "..."
  end
  return name .. "(" .. concat(params, ", ") .. ")", info
end

local inspect

function K.inspect(code, cursor, detail)
  no_user_code = true
  local ok, result = pcall(inspect, code, cursor, detail)
  no_user_code = false
  if not ok then error(result, 0) end
  return result
end

inspect = function(code, cursor, detail)
  local s = cursor
  while s > 0 and code:sub(s, s):match("[%w_%.:]") do s = s - 1 end
  local e = cursor
  while e < #code and code:sub(e + 1, e + 1):match("[%w_]") do e = e + 1 end
  local word = code:sub(s + 1, e):gsub("[%.:]+$", "")
  if word == "" or not word:match("^[%a_]") then return "null" end
  local v = lookup(word)
  if v == nil then return "null" end
  local lines = { word .. ": " .. type(v) }
  local doc = docs[word] or docs[(word:gsub(":", "."))]
  if type(v) == "function" then
    local sig, info = signature(v, word)
    if info and (info.what == "C" or (info.source or ""):find(DRIVER, 1, true)) then
      lines[#lines + 1] = doc or (sig .. "  [built-in]")
    else
      lines[#lines + 1] = "function " .. sig
      if info then
        local src = info.source or "?"
        lines[#lines + 1] = sformat("defined at %s:%s", src:gsub("^[=@]", ""), tostring(info.linedefined))
        local text = K.sources[src]
        if text and (detail or 0) > 0 then
          local n, body = 0, {}
          for line in (text .. "\n"):gmatch("(.-)\n") do
            n = n + 1
            if n >= info.linedefined and n <= info.lastlinedefined then body[#body + 1] = line end
          end
          lines[#lines + 1] = ""
          lines[#lines + 1] = concat(body, "\n")
        end
      end
    end
  else
    if doc then lines[#lines + 1] = doc end
    local preview = repr(v)
    if #preview > 2000 then preview = preview:sub(1, 2000) .. " ..." end
    lines[#lines + 1] = preview
  end
  return json({ text = concat(lines, "\n") })
end

return K
