-- LuaRocks package for moonws.  Built with LuaRocks' own builtin backend,
-- so `luarocks make` works offline; spec/rock_check proves it in CI and
-- checks that every C source of csrc/ (but the tests) is listed below.
-- Platforms (docs/PLATFORMS.md): Linux, macOS and the BSDs as they are
-- (csrc/net/net_sys.h picks the portable code path off Linux); Windows with
-- Winsock (ws2_32) and OpenSSL 3 from OPENSSL_DIR, under MinGW-w64
-- (libraries ssl, crypto, z) or MSVC (libssl, libcrypto, zlib).
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
  platforms = {
    -- MSVC: OpenSSL's Windows builds name their import libraries libssl
    -- and libcrypto; zlib's is zlib.
    windows = {
      OPENSSL = { header = "openssl/ssl.h", library = "libssl" },
      ZLIB = { header = "zlib.h", library = "zlib" },
    },
    mingw32 = {
      OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
      ZLIB = { header = "zlib.h", library = "z" },
    },
  },
}
build = {
  type = "builtin",
  modules = {
    ["moonws.core"] = {
      sources = {
        "csrc/core/ws_buf.c",
        "csrc/core/ws_conn.c",
        "csrc/core/ws_deflate.c",
        "csrc/core/ws_fanout.c",
        "csrc/core/ws_frame.c",
        "csrc/core/ws_handshake.c",
        "csrc/core/ws_http.c",
        "csrc/core/ws_mask.c",
        "csrc/core/ws_proto.c",
        "csrc/core/ws_proxyproto.c",
        "csrc/core/ws_url.c",
        "csrc/core/ws_utf8.c",
        "csrc/lua/lblock_cache.c",
        "csrc/lua/lconn.c",
        "csrc/lua/lconn_fanout.c",
        "csrc/lua/lconn_fast.c",
        "csrc/lua/lconn_frames.c",
        "csrc/lua/lconn_handshake.c",
        "csrc/lua/lconn_io.c",
        "csrc/lua/lmoonws.c",
        "csrc/lua/lnet.c",
        "csrc/lua/lpeer.c",
        "csrc/lua/lpoller.c",
        "csrc/lua/lcoro.c",
        "csrc/lua/lprocess.c",
        "csrc/lua/lsignal.c",
        "csrc/lua/ltls.c",
        "csrc/net/net_poller.c",
        "csrc/net/net_resolver.c",
        "csrc/net/net_signal.c",
        "csrc/net/net_sys.c",
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
    ["moonws.latency"] = "lua/moonws/latency.lua",
    ["moonws.listeners"] = "lua/moonws/listeners.lua",
    ["moonws.log"] = "lua/moonws/log.lua",
    ["moonws.loop"] = "lua/moonws/loop.lua",
    ["moonws.loop_io"] = "lua/moonws/loop_io.lua",
    ["moonws.metrics"] = "lua/moonws/metrics.lua",
    ["moonws.misuse"] = "lua/moonws/misuse.lua",
    ["moonws.options"] = "lua/moonws/options.lua",
    ["moonws.peer_address"] = "lua/moonws/peer_address.lua",
    ["moonws.pool"] = "lua/moonws/pool.lua",
    ["moonws.proxy"] = "lua/moonws/proxy.lua",
    ["moonws.pubsub"] = "lua/moonws/pubsub.lua",
    ["moonws.redirects"] = "lua/moonws/redirects.lua",
    ["moonws.response"] = "lua/moonws/response.lua",
    ["moonws.resty"] = "lua/moonws/resty.lua",
    ["moonws.resty_io"] = "lua/moonws/resty_io.lua",
    ["moonws.server"] = "lua/moonws/server.lua",
    ["moonws.tls"] = "lua/moonws/tls.lua",
    ["moonws.topics"] = "lua/moonws/topics.lua",
    ["moonws.websocket"] = "lua/moonws/websocket.lua",
  },
  platforms = {
    -- Windows with MSVC: no pthread (Win32 threads), Winsock 2, CryptoAPI
    -- for the system's root certificates.  C11 atomics need Visual Studio
    -- 2022 17.5 or later.
    windows = {
      modules = {
        ["moonws.core"] = {
          libraries = { "libssl", "libcrypto", "zlib", "ws2_32", "crypt32", "gdi32", "user32", "advapi32" },
        },
      },
    },
    -- Windows with MinGW-w64 (what make windows cross-builds).
    mingw32 = {
      modules = {
        ["moonws.core"] = {
          libraries = { "ssl", "crypto", "z", "ws2_32", "crypt32", "gdi32", "user32", "advapi32" },
        },
      },
    },
  },
}
test = {
  type = "command",
  command = "make test",
}
