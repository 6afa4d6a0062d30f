-- LuaRocks package for moonws.  Built with LuaRocks' own builtin backend,
-- so `luarocks make` works offline; spec/rock_check proves it in CI and
-- checks that every C source of csrc/ (but the tests) is listed below.
rockspec_format = "3.0"
package = "moonws"
version = "scm-1"
source = {
  url = "git+https://example.invalid/moonws.git",
}
description = {
  summary = "WebSocket (RFC 6455) client and server for Lua, on a C core",
  detailed = [[
moonws speaks RFC 6455 as client and server with a sans-I/O C core, in an
event style shaped like the browser's WebSocket and a coroutine style where
code reads sequentially while nothing blocks.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "builtin",
  modules = {
    ["moonws.core"] = {
      sources = {
        "csrc/core/ws_buf.c",
        "csrc/core/ws_conn.c",
        "csrc/core/ws_deflate.c",
        "csrc/core/ws_frame.c",
        "csrc/core/ws_handshake.c",
        "csrc/core/ws_http.c",
        "csrc/core/ws_mask.c",
        "csrc/core/ws_proto.c",
        "csrc/core/ws_url.c",
        "csrc/core/ws_utf8.c",
        "csrc/lua/lconn.c",
        "csrc/lua/lmoonws.c",
        "csrc/lua/lnet.c",
        "csrc/lua/lpoller.c",
        "csrc/lua/lprocess.c",
        "csrc/lua/lsignal.c",
        "csrc/lua/ltls.c",
        "csrc/net/net_poller.c",
        "csrc/net/net_resolver.c",
        "csrc/net/net_signal.c",
        "csrc/net/net_tcp.c",
        "csrc/net/net_timer.c",
        "csrc/net/net_tls.c",
      },
      defines = { "_GNU_SOURCE", "OPENSSL_API_COMPAT=30000", "OPENSSL_NO_DEPRECATED" },
      incdirs = { "csrc/core", "csrc/net", "csrc/lua", "$(OPENSSL_INCDIR)", "$(ZLIB_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)", "$(ZLIB_LIBDIR)" },
      libraries = { "ssl", "crypto", "z", "pthread" },
    },
    ["moonws"] = "lua/moonws/init.lua",
    ["moonws.client"] = "lua/moonws/client.lua",
    ["moonws.compat"] = "lua/moonws/compat.lua",
    ["moonws.errors"] = "lua/moonws/errors.lua",
    ["moonws.log"] = "lua/moonws/log.lua",
    ["moonws.loop"] = "lua/moonws/loop.lua",
    ["moonws.loop_io"] = "lua/moonws/loop_io.lua",
    ["moonws.options"] = "lua/moonws/options.lua",
    ["moonws.pool"] = "lua/moonws/pool.lua",
    ["moonws.proxy"] = "lua/moonws/proxy.lua",
    ["moonws.pubsub"] = "lua/moonws/pubsub.lua",
    ["moonws.resty"] = "lua/moonws/resty.lua",
    ["moonws.resty_io"] = "lua/moonws/resty_io.lua",
    ["moonws.server"] = "lua/moonws/server.lua",
    ["moonws.tls"] = "lua/moonws/tls.lua",
    ["moonws.websocket"] = "lua/moonws/websocket.lua",
  },
}
test = {
  type = "command",
  command = "make test",
}
